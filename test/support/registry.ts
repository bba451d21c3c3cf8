import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createSign, randomBytes, X509Certificate } from 'node:crypto'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Blob, Image } from './images.js'

export interface TestRegistry {
  url: string
  host: string
  /** Requests the token server answered, with whether they carried Basic credentials. */
  tokenRequests: { scope: string; basic: string | undefined }[]
  push(repo: string, tag: string, top: Blob, images: Image[], extra?: Blob[]): Promise<void>
  close(): Promise<void>
}

/** A loopback port nothing listens on now. */
export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/**
 * Debian's docker-registry (the CNCF distribution registry) on a free loopback port with a
 * temp storage folder. With `token`, it trusts a token server run here, whose signing
 * certificate is made with openssl, so the bearer-token flow is the real one; with
 * `credentials`, the token server also demands Basic credentials.
 */
export async function startRegistry(dir: string, opts: { token?: boolean; credentials?: { username: string; password: string } } = {}): Promise<TestRegistry> {
  await mkdir(dir, { recursive: true })
  const port = await freePort()
  const tokenRequests: TestRegistry['tokenRequests'] = []
  let tokenServer: Server | undefined
  let authYaml = ''
  let key = ''
  let certDer = ''
  if (opts.token) {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'token.key'),
        '-out',
        join(dir, 'token.crt'),
        '-days',
        '2',
        '-subj',
        '/CN=kube-airgap test token issuer',
      ],
      { stdio: 'ignore' },
    )
    key = await readFile(join(dir, 'token.key'), 'utf8')
    certDer = new X509Certificate(await readFile(join(dir, 'token.crt'))).raw.toString('base64')
    tokenServer = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x')
      const scope = u.searchParams.get('scope') ?? ''
      const auth = req.headers.authorization
      tokenRequests.push({ scope, basic: auth?.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : undefined })
      if (opts.credentials && auth !== `Basic ${Buffer.from(`${opts.credentials.username}:${opts.credentials.password}`).toString('base64')}`) {
        res.writeHead(401).end('{"details":"bad credentials"}')
        return
      }
      const [, name, actions] = /^repository:([^:]+):(.+)$/.exec(scope) ?? []
      const now = Math.floor(Date.now() / 1000)
      const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer] }
      const claims = {
        iss: 'kube-airgap-test',
        sub: 'tester',
        aud: 'test-registry',
        exp: now + 600,
        nbf: now - 10,
        iat: now,
        jti: randomBytes(8).toString('hex'),
        access: name ? [{ type: 'repository', name, actions: actions!.split(',') }] : [],
      }
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
      const signing = `${b64(header)}.${b64(claims)}`
      const sig = createSign('RSA-SHA256').update(signing).sign(key).toString('base64url')
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${signing}.${sig}`, expires_in: 600 }))
    })
    await new Promise<void>((r) => tokenServer!.listen(0, '127.0.0.1', () => r()))
    const tport = (tokenServer.address() as AddressInfo).port
    authYaml = `auth:\n  token:\n    realm: http://127.0.0.1:${tport}/token\n    service: test-registry\n    issuer: kube-airgap-test\n    rootcertbundle: ${join(dir, 'token.crt')}\n`
  }
  await writeFile(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${authYaml}`,
  )
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/v2/`).then(
      (r) => r.status === 200 || r.status === 401,
      () => false,
    )
    if (ok) break
    if (i > 100 || child.exitCode !== null) throw new Error(`docker-registry did not start: ${stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }

  const pushToken = async (repo: string): Promise<Record<string, string>> => {
    if (!tokenServer) return {}
    const tport = (tokenServer.address() as AddressInfo).port
    const headers: Record<string, string> = opts.credentials
      ? { authorization: `Basic ${Buffer.from(`${opts.credentials.username}:${opts.credentials.password}`).toString('base64')}` }
      : {}
    const r = await fetch(`http://127.0.0.1:${tport}/token?service=test-registry&scope=repository:${repo}:pull,push`, { headers })
    tokenRequests.pop() // the test's own push is not the client under test
    return { authorization: `Bearer ${((await r.json()) as { token: string }).token}` }
  }

  const putBlob = async (repo: string, b: Blob, auth: Record<string, string>): Promise<void> => {
    const head = await fetch(`${url}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD', headers: auth })
    if (head.status === 200) return
    const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: auth })
    if (start.status !== 202) throw new Error(`upload start ${repo}: ${start.status} ${await start.text()}`)
    const loc = new URL(start.headers.get('location')!, url)
    loc.searchParams.set('digest', b.digest)
    const put = await fetch(loc, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: new Uint8Array(b.data) })
    if (put.status !== 201) throw new Error(`upload ${repo} ${b.digest}: ${put.status} ${await put.text()}`)
  }
  const putManifest = async (repo: string, ref: string, b: Blob, auth: Record<string, string>): Promise<void> => {
    const r = await fetch(`${url}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': b.mediaType },
      body: new Uint8Array(b.data),
    })
    if (r.status !== 201) throw new Error(`manifest ${repo}:${ref}: ${r.status} ${await r.text()}`)
  }

  return {
    url,
    host: `127.0.0.1:${port}`,
    tokenRequests,
    async push(repo, tag, top, images, extra = []) {
      const auth = await pushToken(repo)
      for (const b of extra) await putBlob(repo, b, auth)
      for (const im of images) {
        for (const b of [im.config, ...im.layers]) await putBlob(repo, b, auth)
        await putManifest(repo, im.manifest.digest, im.manifest, auth)
      }
      for (const b of extra.filter((x) => x.mediaType.includes('manifest'))) await putManifest(repo, b.digest, b, auth)
      await putManifest(repo, tag, top, auth)
    },
    async close() {
      child.kill('SIGTERM')
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))
      if (tokenServer) await new Promise<void>((r) => tokenServer!.close(() => r()))
    },
  }
}
