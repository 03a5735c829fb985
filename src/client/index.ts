/** The client SDK: talk to a TeamTalk file server as a client, or to its msg port as a msg_server. */
export * from "./blocks.js"
export * from "./errors.js"
export * from "./fileClient.js"
export * from "./msgLink.js"
export * from "./pduSocket.js"
export * from "./upkeep.js"
