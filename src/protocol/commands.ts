/** Service and command ids of the PDUs the file server and its peers exchange. */
export const ServiceId = {
  File: 5,
  Other: 7
} as const

export const FileCmd = {
  LoginReq: 0x0501,
  LoginRes: 0x0502,
  State: 0x0503,
  PullDataReq: 0x0504,
  PullDataRsp: 0x0505,
  Request: 0x0506,
  Response: 0x0507,
  Notify: 0x0508,
  HasOfflineReq: 0x0509,
  HasOfflineRes: 0x050a,
  AddOfflineReq: 0x050b,
  DelOfflineReq: 0x050c
} as const

export const OtherCmd = {
  HeartBeat: 0x0701,
  FileTransferReq: 0x0731,
  FileTransferRsp: 0x0732,
  FileServerIpReq: 0x0733,
  FileServerIpRsp: 0x0734
} as const

export const TransferMode = { Online: 1, Offline: 2 } as const
export type TransferMode = (typeof TransferMode)[keyof typeof TransferMode]

export const FileState = { PeerReady: 0, Cancel: 1, Refuse: 2, Done: 3 } as const
export type FileState = (typeof FileState)[keyof typeof FileState]

export const FileRole = { Sender: 1, Receiver: 2, Uploader: 3, Downloader: 4 } as const
export type FileRole = (typeof FileRole)[keyof typeof FileRole]


/** LOGIN_RES and TRANSFER_RSP use 0 for success and 1 for any failure, as TeamTalk does. */
export const ResultCode = { Ok: 0, Failed: 1 } as const
