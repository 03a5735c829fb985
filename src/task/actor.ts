import { Deferred, Effect, FiberHandle, Queue } from "effect"
import type { Connection } from "../connection/connection.js"
import { ResultCode } from "../protocol/commands.js"
import { encodePullDataRspHead } from "../protocol/dataBlock.js"
import { patchSeq } from "../protocol/header.js"
import { encodePdu, Pdu } from "../protocol/messages.js"
import type { Command, ConnId, Limits, Outcome, TaskEvent, TaskState } from "./machine.js"
import { initialState, isTerminal, startCommands, step } from "./machine.js"
import type { TaskSpec } from "./spec.js"
import { shortTaskId } from "./spec.js"

export type LoginResult = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/** What a connection posts to a task: a login carries the connection itself and where to put the answer. */
export type Mail =
  | Exclude<TaskEvent, { _tag: "Login" }>
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
  readonly bytesRelayed: number
  readonly durationMs: number
}

/** Events one actor step takes from its mailbox at most: a read's worth of frames. */
const MAX_BATCH = 64

/**
 * Runs one task: takes batches of mail, steps the pure machine, carries out
 * its commands, and returns when the task ends. Writes of one batch leave
 * together (one writev per connection); before the next batch the actor waits for every
 * connection it wrote to to drain, so a receiver that stops reading stops
 * the actor, whose full mailbox then stops the sender's connection reading.
 */
export const runTask = (options: {
  readonly spec: TaskSpec
  readonly mailbox: Queue.Queue<Mail>
  readonly limits: Limits
  readonly taskTimeoutMs: number
  /** Called with the state after every batch (for live views of the task). */
  readonly onState: (state: TaskState) => void
}): Effect.Effect<TaskSummary> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { spec, mailbox, limits } = options
      const conns = new Map<ConnId, Connection>()
      const logins = new Map<ConnId, Extract<Mail, { _tag: "Login" }>>()
      const idleTimer = yield* FiberHandle.make<void, never>()
      const written = new Set<Connection>()
      let state = initialState(spec)
      let ended: { outcome: Outcome; reason: string } | undefined

      const write = (id: ConnId, bytes: Buffer) => {
        const conn = conns.get(id)
        if (conn === undefined) return
        written.add(conn)
        conn.queue(bytes)
      }

      const answerLogin = (id: ConnId, seq: number, ok: boolean, reason: string) => {
        const login = logins.get(id)
        if (login === undefined) return
        logins.delete(id)
        const taskId = ok ? spec.taskId : login.taskIdAsSent
        write(id, encodePdu(Pdu.LoginRes, seq, { resultCode: ok ? ResultCode.Ok : ResultCode.Failed, taskId }))
        Deferred.unsafeDone(login.reply, Effect.succeed<LoginResult>(ok ? { ok: true } : { ok: false, reason }))
      }

      const run = (command: Command): Effect.Effect<void> | undefined => {
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
            patchSeq(command.raw, command.seq)
            write(command.to, command.raw)
            return
          case "SendPull":
            write(command.to, encodePdu(Pdu.PullDataReq, command.seq, command.msg))
            return
          case "SendEmptyBlock":
            write(
              command.to,
              encodePullDataRspHead({
                seq: command.seq,
                resultCode: 0,
                taskId: spec.taskId,
                userId: spec.fromUserId,
                offset: command.offset,
                dataLength: 0
              })
            )
            return
          case "SendState":
            write(command.to, encodePdu(Pdu.State, 0, { state: command.state, taskId: spec.taskId, userId: command.userId }))
            return
          case "Close":
            conns.get(command.conn)?.close(command.reason)
            conns.delete(command.conn)
            return
          case "ArmIdleTimer":
            return FiberHandle.run(
              idleTimer,
              Effect.sleep(options.taskTimeoutMs).pipe(Effect.zipRight(Queue.offer(mailbox, { _tag: "Expired" })))
            ).pipe(Effect.asVoid)
          case "DisarmIdleTimer":
            return FiberHandle.clear(idleTimer)
          case "End":
            ended = { outcome: command.outcome, reason: command.reason }
            return
        }
      }

      /** Runs commands in order; the few that are effects (timers) are returned to be awaited, most steps have none. */
      const runAll = (commands: ReadonlyArray<Command>): Effect.Effect<void> | undefined => {
        let effects: Array<Effect.Effect<void>> | undefined
        for (const c of commands) {
          const e = run(c)
          if (e !== undefined) (effects ??= []).push(e)
        }
        return effects && Effect.all(effects, { discard: true })
      }

      /** Sends what the step queued, then waits for the sockets that are over their high-water mark. */
      const flushWrites = Effect.suspend(() => {
        if (written.size === 0) return Effect.void
        let blocked: Array<Connection> | undefined
        for (const conn of written) {
          conn.flush()
          if (conn.socket.writableNeedDrain) (blocked ??= []).push(conn)
        }
        written.clear()
        return blocked ? Effect.forEach(blocked, (conn) => conn.awaitDrain, { discard: true }) : Effect.void
      })

      const handle = (mail: Mail): Effect.Effect<void> | undefined => {
        if (mail._tag === "Login") {
          conns.set(mail.conn, mail.connection)
          logins.set(mail.conn, mail)
        }
        const [next, commands] = step(state, mail, limits)
        state = next
        return runAll(commands)
      }

      // However the task stops (ended, or interrupted with the server), nobody is left hanging.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const login of logins.values()) Deferred.unsafeDone(login.reply, Effect.succeed<LoginResult>({ ok: false, reason: "task has ended" }))
          for (const conn of conns.values()) conn.close("task ended")
        })
      )
      const startedAt = Date.now()
      yield* runAll(startCommands) ?? Effect.void
      while (!isTerminal(state)) {
        const batch = yield* Queue.takeBetween(mailbox, 1, MAX_BATCH)
        for (const mail of batch) {
          const effect = handle(mail)
          if (effect !== undefined) yield* effect
          if (isTerminal(state)) break
        }
        yield* flushWrites
        options.onState(state)
      }
      // Mail that arrived after the end: logins get their refusal, nothing else matters.
      // Shutting the mailbox also wakes connections blocked offering to it.
      const late = yield* Queue.takeAll(mailbox)
      yield* Queue.shutdown(mailbox)
      for (const mail of late) {
        if (mail._tag === "Login") yield* handle(mail) ?? Effect.void
      }
      yield* flushWrites
      return {
        spec,
        outcome: ended?.outcome ?? "shutdown",
        reason: ended?.reason ?? "",
        bytesRelayed: state.bytesRelayed,
        durationMs: Date.now() - startedAt
      }
    }).pipe(Effect.annotateLogs("task", shortTaskId(options.spec.taskId)))
  )
