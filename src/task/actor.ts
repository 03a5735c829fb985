import { Chunk, Clock, Deferred, Effect, ExecutionStrategy, Exit, Mailbox, Scope } from "effect"
import type { Connection } from "../connection/connection.js"
import { FileState, ResultCode } from "../protocol/commands.js"
import { encodePullDataRspHead } from "../protocol/dataBlock.js"
import type { Bytes } from "../protocol/frame.js"
import { bytesLength } from "../protocol/frame.js"
import { patchSeq } from "../protocol/header.js"
import { encodePdu, Pdu } from "../protocol/messages.js"
import { Metrics } from "../observability/metrics.js"
import type { StoredReader, UploadWriter } from "../storage/store.js"
import { OfflineStore } from "../storage/store.js"
import type { Command, ConnId, Outcome, TaskEvent } from "./machine.js"
import { startCommands } from "./machine.js"
import type { TaskMachine } from "./machines.js"
import type { TaskSpec } from "./spec.js"
import { shortTaskId } from "./spec.js"

export type LoginResult = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/** What a connection posts to a task: a login carries the connection itself and where to put the answer. */
export type Mail =
  | Exclude<TaskEvent, { _tag: "Login" | "Expired" }>
  /** The idle timer armed as generation `gen` fired (stale when it was disarmed or re-armed since). */
  | { readonly _tag: "IdleTimeout"; readonly gen: number }
  | (Extract<TaskEvent, { _tag: "Login" }> & {
      readonly connection: Connection
      /** The task id exactly as the client sent it, for the LOGIN_RES. */
      readonly taskIdAsSent: string
      readonly reply: Deferred.Deferred<LoginResult>
    })

export interface TaskSummary {
  readonly spec: TaskSpec
  readonly outcome: Outcome
  readonly reason: string
  readonly bytes: number
  readonly durationMs: number
}

const NO_BYTES: Bytes = []

/**
 * Runs one task: takes batches of mail, steps the pure machine, carries out
 * its commands, and returns when the task ends. Writes of one batch leave
 * together (one writev per connection). Storage commands run in order, each awaited, and their
 * outcome is stepped through the machine at once.
 */
export const runTask = <S>(options: {
  readonly spec: TaskSpec
  readonly machine: TaskMachine<S>
  readonly mailbox: Mailbox.Mailbox<Mail>
  readonly taskTimeoutMs: number
  /** Bytes a connection may have queued for writing before it is cut off. */
  readonly maxWriteQueueBytes: number
  /** Called with the state after every batch (for live views of the task). */
  readonly onState: (state: S) => void
}): Effect.Effect<TaskSummary, never, OfflineStore | Metrics> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { spec, machine, mailbox } = options
      const store = yield* OfflineStore
      const metrics = yield* Metrics
      const taskScope = yield* Effect.scope
      const conns = new Map<ConnId, Connection>()
      const logins = new Map<ConnId, Extract<Mail, { _tag: "Login" }>>()
      let timer: ReturnType<typeof setTimeout> | undefined
      const written = new Set<Connection>()
      let state = machine.initial
      let ended: { outcome: Outcome; reason: string } | undefined
      /** Generation of the idle timer now armed, if any: a timeout of another one is ignored. */
      let armed: number | undefined
      let timerGen = 0
      let upload: { scope: Scope.CloseableScope; writer: UploadWriter | undefined } | undefined
      let reader: StoredReader | undefined

      /** A connection with more than maxWriteQueueBytes waiting for it is not reading: cut it off. */
      const overLimit = (conn: Connection) => conn.socket.writableLength + conn.queuedBytes() > options.maxWriteQueueBytes

      const write = (id: ConnId, bytes: Buffer) => {
        const conn = conns.get(id)
        if (conn === undefined) return
        written.add(conn)
        conn.queue(bytes)
        if (overLimit(conn)) {
          conn.abort(`peer is not reading: over ${options.maxWriteQueueBytes} bytes queued`)
          conns.delete(id)
          written.delete(conn)
        }
      }

      const answerLogin = (id: ConnId, seq: number, ok: boolean, reason: string) => {
        const login = logins.get(id)
        if (login === undefined) return
        logins.delete(id)
        const taskId = ok ? spec.taskId : login.taskIdAsSent
        write(id, encodePdu(Pdu.LoginRes, seq, { resultCode: ok ? ResultCode.Ok : ResultCode.Failed, taskId }))
        Deferred.unsafeDone(login.reply, Effect.succeed<LoginResult>(ok ? { ok: true } : { ok: false, reason }))
      }

      const sendBlock = (to: ConnId, seq: number, resultCode: number, offset: number, data: Bytes, dataLength: number) => {
        write(to, encodePullDataRspHead({ seq, resultCode, taskId: spec.taskId, userId: spec.fromUserId, offset, dataLength }))
        for (const piece of data) write(to, piece)
      }

      const closeUpload = Effect.suspend(() => {
        const current = upload
        upload = undefined
        return current ? Scope.close(current.scope, Exit.void) : Effect.void
      })

      const storeFailure = (e: { readonly message: string }): TaskEvent => ({ _tag: "UploadFailed", reason: e.message })

      /**
       * Upload blocks the machine has stored, in order, not yet written: the blocks of one
       * batch go to disk in one write (one thread-pool round trip instead of one per block).
       */
      let unstored: Array<Buffer> = []
      const storePending: Effect.Effect<TaskEvent | undefined> = Effect.suspend(() => {
        if (unstored.length === 0) return Effect.succeed(undefined)
        const pieces = unstored
        unstored = []
        if (!upload?.writer) return Effect.succeed(storeFailure({ message: "no upload is open" }))
        return upload.writer.write(pieces).pipe(
          Effect.tap(() => metrics.storedBytes.inc(bytesLength(pieces))),
          Effect.as(undefined),
          Effect.catchAll((e) => Effect.succeed(storeFailure(e)))
        )
      })

      /** Sync commands are carried out here and return nothing; the others return the effect to await. */
      const run = (command: Command): Effect.Effect<TaskEvent | undefined> | undefined => {
        switch (command._tag) {
          case "LoginOk":
            answerLogin(command.conn, command.seq, true, "")
            return
          case "LoginRefused":
            answerLogin(command.conn, command.seq, false, command.reason)
            conns.get(command.conn)?.close(`login refused: ${command.reason}`)
            conns.delete(command.conn)
            return
          case "Forward":
            // The first piece holds the header: only its seq changes.
            patchSeq(command.raw[0]!, command.seq)
            for (const piece of command.raw) write(command.to, piece)
            metrics.relayedBytes.inc(command.dataBytes)
            return
          case "SendBlock":
            sendBlock(command.to, command.seq, 0, command.offset, command.data, command.dataBytes)
            metrics.relayedBytes.inc(command.dataBytes)
            return
          case "SendPull":
            write(command.to, encodePdu(Pdu.PullDataReq, command.seq, command.msg))
            return
          case "SendEmptyBlock":
            sendBlock(command.to, command.seq, 0, command.offset, NO_BYTES, 0)
            return
          case "SendPullError":
            sendBlock(command.to, command.seq, command.code, command.offset, NO_BYTES, 0)
            return
          case "SendState":
            write(command.to, encodePdu(Pdu.State, 0, { state: command.state, taskId: spec.taskId, userId: command.userId }))
            return
          case "RequestBlock":
            write(
              command.to,
              encodePdu(Pdu.PullDataReq, 0, { taskId: spec.taskId, userId: spec.fromUserId, transMode: spec.mode, offset: command.offset, dataSize: command.size })
            )
            return
          case "Close":
            conns.get(command.conn)?.close(command.reason)
            conns.delete(command.conn)
            return
          case "ArmIdleTimer": {
            // A plain timer, not a fiber: tasks waiting for someone are the many, and this is the
            // cheapest way to hold a deadline. It is cleared on disarm and by the task's finalizer.
            const gen = ++timerGen
            armed = gen
            clearTimeout(timer)
            timer = setTimeout(() => mailbox.unsafeOffer({ _tag: "IdleTimeout", gen }), options.taskTimeoutMs)
            return
          }
          case "DisarmIdleTimer":
            armed = undefined
            clearTimeout(timer)
            timer = undefined
            return
          case "End":
            ended = { outcome: command.outcome, reason: command.reason }
            return
          case "OpenUpload":
            return Effect.gen(function* () {
              yield* closeUpload
              unstored = []
              const scope = yield* Scope.fork(taskScope, ExecutionStrategy.sequential)
              upload = { scope, writer: undefined }
              const uploadedAt = yield* Clock.currentTimeMillis
              const writer = yield* store
                .openUpload({
                  taskId: spec.taskId,
                  fromUserId: spec.fromUserId,
                  toUserId: spec.toUserId,
                  fileName: spec.fileName,
                  fileSize: spec.fileSize,
                  createdAt: spec.createdAt,
                  uploadedAt
                })
                .pipe(Scope.extend(scope))
              upload.writer = writer
              return { _tag: "UploadOpened", received: writer.received } satisfies TaskEvent
            }).pipe(Effect.catchAll((e) => Effect.succeed(storeFailure(e))))
          case "StoreBlock":
            if (!upload?.writer) return Effect.succeed(storeFailure({ message: "no upload is open" }))
            // Written with the others of this batch, in one write (storePending).
            for (const piece of command.data) unstored.push(piece)
            return undefined
          case "FinishUpload":
            return storePending.pipe(Effect.flatMap((failed) =>
              failed !== undefined
                ? Effect.succeed(failed)
                : upload?.writer
                ? upload.writer.finish.pipe(
                    Effect.tap((sha256) => Effect.logInfo("upload stored").pipe(Effect.annotateLogs({ bytes: spec.fileSize, sha256 }))),
                    Effect.tap(() => metrics.transfersCompleted.upload.inc()),
                    Effect.as<TaskEvent>({ _tag: "UploadStored" }),
                    Effect.catchAll((e) => Effect.succeed(storeFailure(e)))
                  )
                : Effect.succeed(storeFailure({ message: "no upload is open" }))
            ))
          case "CloseUpload":
            // What arrived in order is kept for a resume (what could not be written is cut on the next open).
            return storePending.pipe(
              Effect.tap((failed) =>
                failed?._tag === "UploadFailed" ? Effect.logWarning("upload blocks not written").pipe(Effect.annotateLogs({ reason: failed.reason })) : Effect.void
              ),
              Effect.zipRight(closeUpload),
              Effect.as(undefined)
            )
          case "ServeBlock":
            // Nobody to read it for any more (the downloader was cut off or closed).
            if (conns.get(command.to)?.isClosing() !== false) return undefined
            return Effect.gen(function* () {
              if (command.size > 0) {
                reader ??= yield* store.openRead(spec.taskId).pipe(Scope.extend(taskScope))
                const block = yield* reader.read(command.offset, command.size)
                sendBlock(command.to, command.seq, 0, command.offset, [block], block.length)
                metrics.servedBytes.inc(command.size)
              } else {
                sendBlock(command.to, command.seq, 0, command.offset, NO_BYTES, 0)
              }
              if (command.last) write(command.to, encodePdu(Pdu.State, 0, { state: FileState.Done, taskId: spec.taskId, userId: spec.fromUserId }))
              if (command.last) metrics.transfersCompleted.download.inc()
              return undefined
            }).pipe(Effect.catchAll((e) => Effect.succeed<TaskEvent>({ _tag: "ServeFailed", conn: command.to, seq: command.seq, offset: command.offset, reason: e.message })))
          case "RemoveStored":
            return store.remove(spec.taskId).pipe(
              Effect.tap(() => Effect.logInfo("stored file removed")),
              Effect.catchAll((e) => Effect.logError("cannot remove stored file").pipe(Effect.annotateLogs({ error: e.message }))),
              Effect.as(undefined)
            )
        }
      }

      /** Steps one event and carries out its commands; events produced by storage commands are stepped in turn. */
      const handle = (event: TaskEvent): Effect.Effect<void> | undefined => {
        const [next, commands] = machine.step(state, event)
        state = next
        let effects: Array<Effect.Effect<TaskEvent | undefined>> | undefined
        for (const c of commands) {
          const e = run(c)
          if (e !== undefined) (effects ??= []).push(e)
        }
        if (effects === undefined) return undefined
        const pending = effects
        return Effect.gen(function* () {
          for (const effect of pending) {
            const follow = yield* effect
            if (follow !== undefined) {
              const more = handle(follow)
              if (more !== undefined) yield* more
            }
          }
        })
      }

      const receive = (mail: Mail): Effect.Effect<void> | undefined => {
        switch (mail._tag) {
          case "Login":
            conns.set(mail.conn, mail.connection)
            logins.set(mail.conn, mail)
            return handle(mail)
          case "IdleTimeout":
            // A timeout already queued when the timer was disarmed (or re-armed) is stale.
            return mail.gen === armed ? handle({ _tag: "Expired" }) : undefined
          case "Left": {
            const effect = handle(mail)
            conns.delete(mail.conn)
            return effect
          }
          case "PullReq":
          case "PullRsp":
          case "State": {
            // What a connection sent before it was cut off or closed is not acted on.
            const conn = conns.get(mail.conn)
            if (conn !== undefined && conn.isClosing()) return undefined
            return handle(mail)
          }
          default:
            return handle(mail)
        }
      }

      /**
       * Sends what the step queued. The actor never waits for a socket: a peer that does not
       * read stops being read itself (its connection waits for its own socket to drain before
       * taking more requests), and one that lets more than `maxWriteQueueBytes` pile up is cut
       * off as the bytes are queued (see `write`).
       */
      const flushWrites = Effect.sync(() => {
        for (const conn of written) conn.flush()
        written.clear()
      })

      const refused: LoginResult = { ok: false, reason: "task has ended" }
      // However the task stops (ended, interrupted with the server, or by a defect), nobody is
      // left hanging: the mailbox takes no more mail, and logins still in it are refused.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          clearTimeout(timer)
          machine.release()
          mailbox.unsafeDone(Exit.void)
          for (;;) {
            const left = yield* mailbox.clear
            if (Chunk.isEmpty(left)) break
            for (const mail of left) {
              if (mail._tag !== "Login") continue
              Deferred.unsafeDone(mail.reply, Effect.succeed(refused))
              mail.connection.close("task has ended")
            }
          }
          yield* mailbox.shutdown
          for (const login of logins.values()) Deferred.unsafeDone(login.reply, Effect.succeed(refused))
          for (const conn of conns.values()) conn.close("task ended")
        })
      )
      const startedAt = Date.now()
      for (const command of startCommands) yield* run(command) ?? Effect.void
      let unread: Array<Mail> = []
      while (!machine.isTerminal(state)) {
        // Everything posted since the last step (at least one mail): one step, one flush of writes.
        const [mail] = yield* mailbox.takeAll
        const batch = Chunk.toReadonlyArray(mail)
        for (let i = 0; i < batch.length; i++) {
          const effect = receive(batch[i]!)
          if (effect !== undefined) yield* effect
          if (machine.isTerminal(state)) {
            unread = batch.slice(i + 1)
            break
          }
        }
        const failed = yield* storePending
        if (failed !== undefined) yield* handle(failed) ?? Effect.void
        yield* flushWrites
        options.onState(state)
      }
      // Mail that arrived after the end (in the last batch or still queued): logins get
      // their refusal, nothing else matters. The mailbox refuses new mail from here on;
      // shutting it wakes connections still waiting to post (their mail is refused).
      mailbox.unsafeDone(Exit.void)
      const late = [...unread]
      for (;;) {
        const more = yield* mailbox.clear
        if (Chunk.isEmpty(more)) break
        late.push(...more)
      }
      yield* mailbox.shutdown
      for (const mail of late) {
        if (mail._tag === "Login") yield* receive(mail) ?? Effect.void
      }
      yield* flushWrites
      yield* closeUpload
      return {
        spec,
        outcome: ended?.outcome ?? "shutdown",
        reason: ended?.reason ?? "",
        bytes: machine.view(state).bytes,
        durationMs: Date.now() - startedAt
      }
    }).pipe(Effect.annotateLogs("task", shortTaskId(options.spec.taskId)))
  )
