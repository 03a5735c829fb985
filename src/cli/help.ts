import { HelpDoc } from "@effect/cli"

/** A command's help text: what it does, then examples to copy. */
export const helpText = (summary: string, examples: ReadonlyArray<string>): HelpDoc.HelpDoc =>
  HelpDoc.blocks([HelpDoc.p(summary), HelpDoc.h2("EXAMPLES"), HelpDoc.p(examples.map((e) => `  $ ${e}`).join("\n"))])
