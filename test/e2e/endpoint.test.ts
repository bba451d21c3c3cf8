import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import { connect } from 'node:net'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Backend, DOWN_WITHIN_SECONDS, endpointFindings, HEALTH, haproxyConfig, serverStates } from '../../installer/apiserver-proxy.js'
import { NodeHost } from '../../installer/host.js'
import { APISERVER_PROXY_CONFIG, APISERVER_PROXY_SOCKET } from '../../installer/node-paths.js'
import type { Context } from '../../installer/plan.js'

/**
 * The local endpoint with the real HAProxy (Debian's package, as the bundle carries it for
 * the nodes) running the configuration the installer writes, in front of three TLS listeners
 * on loopback addresses playing API servers: GET /readyz answers 200 when ready (500 when
 * not), GET /version names the master. No stand-in for the load balancing itself.
 */
const HAPROXY = '/usr/sbin/haproxy'
const HAVE_HAPROXY = existsSync(HAPROXY)
if (!HAVE_HAPROXY) console.log("endpoint.test.ts: no /usr/sbin/haproxy here (.ci/run installs Debian's haproxy): the real-HAProxy tests are skipped")

let dir: string
let key: string
let cert: string
let haproxy: ChildProcess | undefined
let listen: string
let socket: string
/** The node's root: the proxy's config and runtime API where the installer puts them, for doctor. */
let root: string
const doctor = () => endpointFindings({ host: new NodeHost(root) } as unknown as Context)

interface FakeApiServer {
  backend: Backend
  ready: boolean
  served: number
  server?: Server
}
const masters: FakeApiServer[] = ['m01', 'm02', 'm03'].map((name, i) => ({ backend: { name, address: `127.0.0.${21 + i}` }, ready: true, served: 0 }))

async function start(m: FakeApiServer): Promise<void> {
  const server = createServer({ key, cert }, (req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(m.ready ? 200 : 500).end(m.ready ? 'ok' : '[-]etcd failed: reason withheld\nreadyz check failed')
      return
    }
    m.served++
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ master: m.backend.name }))
  })
  // The port the first start got, again on a restart: the same master coming back.
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(m.backend.port ?? 0, m.backend.address, resolve))
  m.backend.port = (server.address() as { port: number }).port
  m.server = server
}

/** Stopped as a crashed API server stops: the listener closed and every open connection cut. */
async function stop(m: FakeApiServer): Promise<void> {
  m.server?.closeAllConnections()
  await new Promise((resolve) => m.server?.close(resolve))
  m.server = undefined
}

const freePort = async (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

/** GET /version through the proxy: which master answered, or the error. */
const viaProxy = (): Promise<string> =>
  new Promise((resolve) => {
    const [host, port] = listen.split(':')
    const req = request({ host, port: Number(port), path: '/version', rejectUnauthorized: false, agent: false, timeout: 5000 }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(res.statusCode === 200 ? (JSON.parse(body) as { master: string }).master : `HTTP ${res.statusCode}`))
    })
    req.on('error', (e) => resolve(`error: ${e.message}`))
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end()
  })

/** HAProxy's own view, from its runtime API: each master's state. */
const states = (): Promise<Record<string, string>> =>
  new Promise((resolve, reject) => {
    const c = connect(socket)
    let text = ''
    c.on('data', (d) => (text += d))
    c.on('end', () => resolve(Object.fromEntries(serverStates(text).map((s) => [s.server, s.status.split(' ')[0]!]))))
    c.on('error', reject)
    c.end('show stat\n')
  })

/** Seconds until `want` holds, polling every 100 ms up to `limit` seconds (then the last state seen). */
async function secondsUntil(want: (s: Record<string, string>) => boolean, limit: number): Promise<number> {
  const t0 = Date.now()
  while (Date.now() - t0 < limit * 1000) {
    if (want(await states())) return (Date.now() - t0) / 1000
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`not within ${limit} s: ${JSON.stringify(await states())}`)
}

beforeAll(async () => {
  if (!HAVE_HAPROXY) return
  dir = await mkdtemp(join(tmpdir(), 'ka-endpoint-'))
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=kube-apiserver',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    {
      stdio: 'ignore',
    },
  )
  key = await readFile(join(dir, 'key.pem'), 'utf8')
  cert = await readFile(join(dir, 'cert.pem'), 'utf8')
  for (const m of masters) await start(m)
  listen = `127.0.0.1:${await freePort()}`
  root = join(dir, 'node')
  socket = join(root, APISERVER_PROXY_SOCKET)
  const cfg = join(root, APISERVER_PROXY_CONFIG)
  await mkdir(join(cfg, '..'), { recursive: true })
  await mkdir(join(socket, '..'), { recursive: true })
  await writeFile(cfg, haproxyConfig({ listen, backends: masters.map((m) => m.backend), socket }))
  haproxy = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  haproxy.stderr?.on('data', (d) => (err += d))
  const t0 = Date.now()
  while (!existsSync(socket)) {
    if (haproxy.exitCode !== null || Date.now() - t0 > 10_000) throw new Error(`haproxy did not start: ${err}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}, 60_000)

afterAll(async () => {
  haproxy?.kill()
  for (const m of masters) await stop(m)
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe.skipIf(!HAVE_HAPROXY)('the local endpoint: the real HAProxy with the configuration the installer writes', () => {
  it('is a configuration HAProxy accepts as it is (haproxy -c), with every master checked over TLS on /readyz', async () => {
    const cfg = join(root, APISERVER_PROXY_CONFIG)
    expect(execFileSync(HAPROXY, ['-c', '-f', cfg], { encoding: 'utf8' })).toMatch(/Configuration file is valid/)
    const text = await readFile(cfg, 'utf8')
    for (const m of masters) expect(text).toContain(`server ${m.backend.name} ${m.backend.address}:${m.backend.port}`)
    expect(text).toMatch(/option httpchk GET \/readyz/)
  })

  it('spreads requests over the three masters; a stopped master leaves within the configured time while every request still succeeds, and is back within the configured time once it answers again', async () => {
    await secondsUntil((s) => masters.every((m) => s[m.backend.name] === 'UP'), 10)
    const answered = await Promise.all(Array.from({ length: 30 }, viaProxy))
    expect(new Set(answered)).toEqual(new Set(['m01', 'm02', 'm03']))

    const m02 = masters[1]!
    await stop(m02)
    // Requests go on while the checks notice: a connection refused by m02 is sent to another master.
    const during: string[] = []
    let noticed: number | undefined
    const t0 = Date.now()
    const watch = secondsUntil((s) => s.m02 === 'DOWN', DOWN_WITHIN_SECONDS + 2).then((s) => (noticed = s))
    while (noticed === undefined && Date.now() - t0 < (DOWN_WITHIN_SECONDS + 3) * 1000) during.push(await viaProxy())
    await watch
    console.log(
      `a stopped master was taken out after ${noticed!.toFixed(1)} s (configured: within ${DOWN_WITHIN_SECONDS} s); ${during.length} requests meanwhile`,
    )
    expect(noticed!).toBeLessThanOrEqual(DOWN_WITHIN_SECONDS)
    expect(during.length).toBeGreaterThan(5)
    expect(during.filter((r) => r !== 'm01' && r !== 'm03')).toEqual([])
    expect(await doctor()).toEqual([
      expect.objectContaining({
        level: 'warn',
        check: 'local endpoint 127.0.0.1:7443',
        found: expect.stringMatching(/^up: m01, m03; not answering: m02 \(DOWN/),
      }),
    ])

    await start(m02)
    const back = await secondsUntil((s) => s.m02 === 'UP', HEALTH.rise * (HEALTH.intervalSeconds + HEALTH.timeoutSeconds) + 2)
    console.log(`a restarted master was back after ${back.toFixed(1)} s`)
    const after = await Promise.all(Array.from({ length: 30 }, viaProxy))
    expect(after).toContain('m02')
    expect(await doctor()).toEqual([{ level: 'ok', check: 'local endpoint 127.0.0.1:7443', found: 'every master answers: m01, m02, m03' }])
  }, 60_000)

  it('sends nothing to a master whose API server runs but is not ready (/readyz 500)', async () => {
    const m03 = masters[2]!
    m03.ready = false
    try {
      await secondsUntil((s) => s.m03 === 'DOWN', DOWN_WITHIN_SECONDS + 2)
      const before = m03.served
      const answered = await Promise.all(Array.from({ length: 20 }, viaProxy))
      expect(new Set(answered)).toEqual(new Set(['m01', 'm02']))
      expect(m03.served).toBe(before)
    } finally {
      m03.ready = true
    }
  }, 30_000)

  it('doctor fails, naming the unit, when the proxy does not answer', async () => {
    haproxy?.kill()
    await new Promise((r) => haproxy?.once('exit', r))
    const [f] = await doctor()
    expect(f).toMatchObject({ level: 'fail', found: 'kube-airgap-apiserver-proxy does not answer (/run/kube-airgap-apiserver-proxy.sock)' })
    expect(f?.fix).toMatch(/^systemctl status kube-airgap-apiserver-proxy/)
  })
})
