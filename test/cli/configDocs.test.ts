/** The configuration docs say what the code does: every setting with its variable, file keys and default. */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { envName, fileKey, optionList } from "../../src/server/settingsConfig.js"
import { repoRoot } from "../support/daemon.js"

describe("configuration docs", () => {
  it("docs/configuration.md and the README list every setting with its variable, file keys and default as the code has them", () => {
    const doc = readFileSync(join(repoRoot, "docs", "configuration.md"), "utf8")
    const readme = readFileSync(join(repoRoot, "README.md"), "utf8")
    for (const o of optionList) {
      const row = doc.split("\n").find((l) => l.startsWith(`| \`--${o.name}\` |`))
      const cells = row?.split(" | ").slice(1, 4)
      const keys = [fileKey(o.name), ...(o.teamTalkKey ? [o.teamTalkKey] : [])].map((k) => `\`${k}\``).join(", ")
      // The advertise default is prose, shortened in the table.
      const shown = o.name === "advertise" ? "each client address" : `\`${o.shownDefault}\``
      expect(cells, o.name).toEqual([`\`${envName(o.name)}\``, keys, shown])
      expect(readme, o.name).toContain(`| \`--${o.name}\` |`)
    }
  })
})
