import { createServer, request as httpRequest, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

export interface ProxyLog {
  method: string
  target: string
}

/**
 * A forward proxy on loopback, as corporate networks have: absolute-form requests for
 * http:// targets, CONNECT tunnels for anything else. It marks the requests it forwards
 * (`x-test-proxy: 1`) so the upstream log shows which came through it.
 */
export async function startProxy(): Promise<{ url: string; log: ProxyLog[]; close(): Promise<void> }> {
  const log: ProxyLog[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    log.push({ method: req.method ?? '', target: req.url ?? '' })
    const target = new URL(req.url ?? '')
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers: { ...req.headers, 'x-test-proxy': '1' } },
      (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers)
        ures.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  server.on('connect', (req, client: Socket, head: Buffer) => {
    log.push({ method: 'CONNECT', target: req.url ?? '' })
    const [host, port] = (req.url ?? '').split(':')
    const up = connect(Number(port), host ?? '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length) up.write(head)
      up.pipe(client)
      client.pipe(up)
    })
    up.on('error', () => client.destroy())
    client.on('error', () => up.destroy())
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
