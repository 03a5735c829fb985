/**
 * Flags for node when it runs the daemon: `npm start`, the systemd unit, the
 * Docker image and the bench all start it with these (test/cli/deploy.test.ts
 * checks they agree).
 *
 * V8's young generation defaults to 16 MiB semi-spaces, and a file server
 * fills them with short-lived garbage (one PDU's objects per block) that
 * stays resident between scavenges. 2 MiB semi-spaces cost no measurable CPU
 * here and keep about 40 MiB less resident (docs/performance.md).
 */
export const DAEMON_NODE_FLAGS: ReadonlyArray<string> = ["--max-semi-space-size=2"]
