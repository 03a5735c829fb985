import { Effect } from "effect"
import type { IncomingHttpHeaders } from "node:http"
import { request } from "node:http"

export interface HttpResponse {
  readonly status: number
  readonly contentType: string | undefined
  readonly body: string
  readonly headers: IncomingHttpHeaders
}

/** One HTTP request on a connection of its own (no keep-alive: nothing outlives the test). */
export const httpRequest = (address: { readonly host: string; readonly port: number }, path: string, method = "GET"): Effect.Effect<HttpResponse, Error> =>
  Effect.async<HttpResponse, Error>((resume) => {
    const req = request({ host: address.host, port: address.port, path, method, agent: false }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (d: string) => (body += d))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body, headers: res.headers })))
      res.on("error", (e) => resume(Effect.fail(e)))
    })
    req.on("error", (e) => resume(Effect.fail(e)))
    req.end()
  })
