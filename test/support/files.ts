import { join } from "node:path"

/** The files of one task in TeamTalk's layout: the complete file, the upload in progress, our sidecar. */
export const storedFiles = (dataDir: string, taskId: string) => {
  const dir = join(dataDir, "offline_file", taskId.slice(0, 2))
  const file = join(dir, taskId)
  return { dir, file, part: `${file}.part`, meta: `${file}.json` }
}
