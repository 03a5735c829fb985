/**
 * The reference ceiling for the benchmark: a bare `node:net` relay that
 * speaks just enough of the file protocol for the SDK's online sender and
 * receiver. Any task id is accepted; the first sender and the first receiver
 * that log in to it are paired. Pull requests and responses are forwarded as
 * raw frames, without decoding or checks; a FILE_STATE is forwarded and ends
 * the pair. Writes are batched per read chunk and reads are paused while the
 * other side's socket is full, so it is a fair, not a reckless, ceiling.
 *
 * Run as its own process: `node dist/bench/bareRelay.js [--host H] [--port P]`.
 * It prints one JSON line shaped like the daemon's listening log, so the
 * bench reads both the same way.
 */
import { createServer } from "node:net"
import type { Socket } from "node:net"
import { FileCmd, FileRole, FileState, OtherCmd, ServiceId } from "../src/protocol/commands.js"
import type { Frame } from "../src/protocol/frame.js"
import { FrameDecoder, frameBody } from "../src/protocol/frame.js"
import { encodePdu, Pdu } from "../src/protocol/messages.js"

interface Party {
  readonly socket: Socket
  readonly userId: number
}

interface Pair {
  sender?: Party
  receiver?: Party
}

const pairs = new Map<string, Pair>()

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

/** Per connection: frames in, frames out to self or the peer, one write batch per read chunk. */
const handle = (socket: Socket): void => {
  const decoder = new FrameDecoder()
  const frames: Array<Frame> = []
  let taskId: string | undefined
  let role: number | undefined

  const pair = (): Pair | undefined => (taskId === undefined ? undefined : pairs.get(taskId))
  const peer = (): Socket | undefined => {
    const p = pair()
    return role === FileRole.Sender ? p?.receiver?.socket : p?.sender?.socket
  }
  const end = () => {
    const p = pair()
    if (p === undefined) return
    pairs.delete(taskId!)
    p.sender?.socket.end()
    p.receiver?.socket.end()
  }

  const onLogin = (frame: Frame) => {
    const req = Pdu.LoginReq.decodeBody(frameBody(frame))
    if (req._tag === "Left") return socket.destroy()
    const { taskId: id, userId, fileRole } = req.right
    socket.write(encodePdu(Pdu.LoginRes, frame.seq, { resultCode: 0, taskId: id }))
    const p = pairs.get(id) ?? {}
    pairs.set(id, p)
    taskId = id
    role = fileRole
    if (fileRole === FileRole.Sender) p.sender = { socket, userId }
    else p.receiver = { socket, userId }
    if (p.sender && p.receiver) {
      p.receiver.socket.write(encodePdu(Pdu.State, 0, { state: FileState.PeerReady, taskId: id, userId: p.sender.userId }))
    }
  }

  socket.on("data", (chunk: Buffer) => {
    const error = decoder.push(chunk, frames)
    const out = peer()
    if (out) out.cork()
    for (const frame of frames) {
      if (frame.serviceId === ServiceId.File) {
        switch (frame.commandId) {
          case FileCmd.LoginReq:
            onLogin(frame)
            break
          case FileCmd.PullDataReq:
          case FileCmd.PullDataRsp:
            peer()?.write(frame.raw)
            break
          case FileCmd.State:
            peer()?.write(frame.raw)
            end()
            break
        }
      } else if (frame.serviceId === ServiceId.Other && frame.commandId === OtherCmd.HeartBeat) {
        socket.write(frame.raw)
      }
    }
    frames.length = 0
    if (out) {
      out.uncork()
      // Backpressure: stop reading until the other side has taken what we gave it.
      if (out.writableNeedDrain) {
        socket.pause()
        out.once("drain", () => socket.resume())
      }
    }
    if (error) socket.destroy()
  })
  socket.on("error", () => socket.destroy())
  socket.on("close", () => {
    const p = pair()
    if (p && (p.sender?.socket === socket || p.receiver?.socket === socket)) {
      pairs.delete(taskId!)
      p.sender?.socket.destroy()
      p.receiver?.socket.destroy()
    }
  })
}

const server = createServer({ noDelay: true }, handle)
// The daemon's backlog: with the default (511) a thousand clients connecting at once stall in the kernel.
server.listen({ host: argValue("--host") ?? "127.0.0.1", port: Number(argValue("--port") ?? 0), backlog: 4096 }, () => {
  const address = server.address()
  const bound = typeof address === "object" && address ? address.port : 0
  process.stdout.write(JSON.stringify({ message: "listening", logLevel: "INFO", annotations: { port: "client", bound } }) + "\n")
})

const shutdown = () => {
  server.close()
  for (const p of pairs.values()) {
    p.sender?.socket.destroy()
    p.receiver?.socket.destroy()
  }
  process.exit(0)
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)
