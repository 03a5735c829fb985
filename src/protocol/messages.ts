import { Data, Either } from "effect"
import { join } from "node:path"
import protobuf from "protobufjs"
import { FileCmd, OtherCmd, ServiceId } from "./commands.js"
import type { FileRole, FileState, TransferMode } from "./commands.js"
import { encodeFrame } from "./frame.js"
import { packageRoot } from "../packageRoot.js"

const root = (() => {
  const dir = join(packageRoot, "proto")
  const r = new protobuf.Root()
  r.resolvePath = (_origin, target) => join(dir, target)
  return r.loadSync(["IM.BaseDefine.proto", "IM.File.proto", "IM.Server.proto", "IM.Other.proto"])
})()

export interface IpAddr {
  readonly ip: string
  readonly port: number
}
export interface OfflineFileInfo {
  readonly fromUserId: number
  readonly taskId: string
  readonly fileName: string
  readonly fileSize: number
}
export interface LoginReq {
  readonly userId: number
  readonly taskId: string
  readonly fileRole: FileRole
}
export interface LoginRsp {
  readonly resultCode: number
  readonly taskId: string
}
export interface FileStateMsg {
  readonly state: FileState
  readonly taskId: string
  readonly userId: number
}
export interface PullDataReq {
  readonly taskId: string
  readonly userId: number
  readonly transMode: TransferMode
  readonly offset: number
  readonly dataSize: number
}
export interface PullDataRsp {
  readonly resultCode: number
  readonly taskId: string
  readonly userId: number
  readonly offset: number
  readonly fileData: Uint8Array
}
export interface FileReq {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly transMode: TransferMode
}
export interface FileRsp {
  readonly resultCode: number
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly taskId: string
  readonly ipAddrList: ReadonlyArray<IpAddr>
  readonly transMode: TransferMode
}
export interface FileNotify {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly taskId: string
  readonly ipAddrList: ReadonlyArray<IpAddr>
  readonly transMode: TransferMode
  readonly offlineReady: number
}
export interface HasOfflineReq {
  readonly userId: number
  readonly attachData?: Uint8Array
}
export interface HasOfflineRsp {
  readonly userId: number
  readonly offlineFileList: ReadonlyArray<OfflineFileInfo>
  readonly ipAddrList: ReadonlyArray<IpAddr>
  readonly attachData?: Uint8Array
}
export interface AddOfflineReq {
  readonly fromUserId: number
  readonly toUserId: number
  readonly taskId: string
  readonly fileName: string
  readonly fileSize: number
}
export interface DelOfflineReq {
  readonly fromUserId: number
  readonly toUserId: number
  readonly taskId: string
}
export interface TransferReq {
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName: string
  readonly fileSize: number
  readonly transMode: TransferMode
  readonly attachData?: Uint8Array
}
export interface TransferRsp {
  readonly resultCode: number
  readonly fromUserId: number
  readonly toUserId: number
  readonly fileName?: string
  readonly fileSize?: number
  readonly taskId?: string
  readonly transMode?: TransferMode
  readonly attachData?: Uint8Array
}
export interface ServerIpReq {}
export interface ServerIpRsp {
  readonly ipAddrList: ReadonlyArray<IpAddr>
}
export interface HeartBeat {}

export class BodyDecodeError extends Data.TaggedError("BodyDecodeError")<{
  readonly type: string
  readonly cause: unknown
}> {
  override get message() {
    return `malformed ${this.type} body: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/** A PDU kind: where it goes in the header and how its body is (de)serialised. */
export interface PduType<A> {
  readonly name: string
  readonly serviceId: number
  readonly commandId: number
  readonly encodeBody: (message: A) => Uint8Array
  /** Parses and checks a body: every proto2 `required` field must be present. */
  readonly decodeBody: (body: Uint8Array) => Either.Either<A, BodyDecodeError>
}

const pduType = <A>(serviceId: number, commandId: number, typeName: string): PduType<A> => {
  const type = root.lookupType(typeName)
  // protobufjs serves absent optional fields from the prototype (defaults, and a
  // plain Array for bytes); copying the own properties leaves them undefined as
  // typed. Only types with optional fields pay for the copy.
  const hasOptional = type.fieldsArray.some((f) => f.optional && !f.repeated)
  const repeated = type.fieldsArray.filter((f) => f.repeated).map((f) => f.name)
  const present = (message: protobuf.Message): A => {
    if (!hasOptional) return message as unknown as A
    const out: Record<string, unknown> = { ...message }
    for (const name of repeated) out[name] ??= []
    return out as A
  }
  return {
    name: typeName,
    serviceId,
    commandId,
    encodeBody: (message) => type.encode(message as object).finish(),
    decodeBody: (body) => {
      try {
        return Either.right(present(type.decode(body)))
      } catch (cause) {
        return Either.left(new BodyDecodeError({ type: typeName, cause }))
      }
    }
  }
}

export const Pdu = {
  LoginReq: pduType<LoginReq>(ServiceId.File, FileCmd.LoginReq, "IM.File.IMFileLoginReq"),
  LoginRes: pduType<LoginRsp>(ServiceId.File, FileCmd.LoginRes, "IM.File.IMFileLoginRsp"),
  State: pduType<FileStateMsg>(ServiceId.File, FileCmd.State, "IM.File.IMFileState"),
  PullDataReq: pduType<PullDataReq>(ServiceId.File, FileCmd.PullDataReq, "IM.File.IMFilePullDataReq"),
  PullDataRsp: pduType<PullDataRsp>(ServiceId.File, FileCmd.PullDataRsp, "IM.File.IMFilePullDataRsp"),
  Request: pduType<FileReq>(ServiceId.File, FileCmd.Request, "IM.File.IMFileReq"),
  Response: pduType<FileRsp>(ServiceId.File, FileCmd.Response, "IM.File.IMFileRsp"),
  Notify: pduType<FileNotify>(ServiceId.File, FileCmd.Notify, "IM.File.IMFileNotify"),
  HasOfflineReq: pduType<HasOfflineReq>(ServiceId.File, FileCmd.HasOfflineReq, "IM.File.IMFileHasOfflineReq"),
  HasOfflineRes: pduType<HasOfflineRsp>(ServiceId.File, FileCmd.HasOfflineRes, "IM.File.IMFileHasOfflineRsp"),
  AddOfflineReq: pduType<AddOfflineReq>(ServiceId.File, FileCmd.AddOfflineReq, "IM.File.IMFileAddOfflineReq"),
  DelOfflineReq: pduType<DelOfflineReq>(ServiceId.File, FileCmd.DelOfflineReq, "IM.File.IMFileDelOfflineReq"),
  HeartBeat: pduType<HeartBeat>(ServiceId.Other, OtherCmd.HeartBeat, "IM.Other.IMHeartBeat"),
  TransferReq: pduType<TransferReq>(ServiceId.Other, OtherCmd.FileTransferReq, "IM.Server.IMFileTransferReq"),
  TransferRsp: pduType<TransferRsp>(ServiceId.Other, OtherCmd.FileTransferRsp, "IM.Server.IMFileTransferRsp"),
  ServerIpReq: pduType<ServerIpReq>(ServiceId.Other, OtherCmd.FileServerIpReq, "IM.Server.IMFileServerIPReq"),
  ServerIpRsp: pduType<ServerIpRsp>(ServiceId.Other, OtherCmd.FileServerIpRsp, "IM.Server.IMFileServerIPRsp")
} as const

/**
 * The string in field `field` of a protobuf body, read without checking the
 * rest: a refused LOGIN_REQ must echo its task id even when another field
 * (an unknown role, say) makes the body undecodable. "" when absent or unreadable.
 */
export const peekStringField = (body: Uint8Array, field: number): string => {
  try {
    const reader = protobuf.Reader.create(body)
    while (reader.pos < reader.len) {
      const tag = reader.uint32()
      if (tag >>> 3 === field && (tag & 7) === 2) return reader.string()
      reader.skipType(tag & 7)
    }
  } catch {
    // fall through: nothing readable
  }
  return ""
}

export const encodePdu = <A>(type: PduType<A>, seq: number, message: A): Buffer =>
  encodeFrame(type.serviceId, type.commandId, seq, type.encodeBody(message))

/** True when `frame` has the service and command of `type`. */
export const isPdu = (
  frame: { readonly serviceId: number; readonly commandId: number },
  type: { readonly serviceId: number; readonly commandId: number }
): boolean =>
  frame.serviceId === type.serviceId && frame.commandId === type.commandId
