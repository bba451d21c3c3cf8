import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DockerCredentials } from '../../builder/images/credentials.js'
import { Connections } from '../../builder/download/connections.js'
import { httpDefaults } from '../../builder/download/http.js'
import { parseChallenge, parseRegistryMirror, RegistryClient } from '../../builder/images/registry.js'
import { Sha256 } from '../../bundle/digest.js'
import { isKaError } from '../../bundle/errors.js'
import { parseManifestDoc, selectPlatform } from '../../bundle/oci.js'
import { parseImageRef } from '../../bundle/reference.js'
import { busyboxBinary, image, index, layer, MT, randomLayer } from '../support/images.js'
import { startRegistry, type TestRegistry } from '../support/registry.js'
import { startUpstream } from '../support/upstream.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-registry-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function fixtureImages() {
  const base = layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } })
  const armBase = layer({ 'bin/busybox': { data: Buffer.from('not really arm64 busybox'), mode: 0o755 } })
  const app = layer({ 'etc/app': { data: Buffer.from('app\n') } })
  const amd = image({ os: 'linux', architecture: 'amd64' }, [base, app], ['/bin/busybox', 'cat', '/etc/app'])
  const arm = image({ os: 'linux', architecture: 'arm64', variant: 'v8' }, [armBase, app], ['/bin/busybox', 'cat', '/etc/app'])
  return { amd, arm, ...index([amd, arm], { attestation: true }) }
}

const client = (reg: TestRegistry, credentials = new DockerCredentials({ configDir: join(dir, 'no-docker-config') }), prefix = '') =>
  new RegistryClient({ http: httpDefaults({ backoffMs: 50 }), mirrors: [parseRegistryMirror(`example.test=${reg.url}${prefix}`)], credentials })

describe('registry client against a real registry', () => {
  it('splits a large blob into ranges after the registry redirects it to storage, under the connection budget', async () => {
    const reg = await startRegistry(join(dir, 'redirect'))
    const storage = await startUpstream(join(dir, 'storage'))
    // Blobs are served by "storage" (as S3 or a CDN serves them for a real registry), throttled per connection.
    const front = createServer((req, res) => {
      const m = /\/blobs\/sha256:([0-9a-f]{64})$/.exec(req.url ?? '')
      if (m && req.method === 'GET') return void res.writeHead(307, { location: `${storage.url}/blobs/${m[1]}` }).end()
      const up = request(`${reg.url}${req.url}`, { method: req.method, headers: req.headers }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers)
        ures.pipe(res)
      })
      req.pipe(up)
    })
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()))
    try {
      const big = randomLayer(6 << 20, 'redirected')
      const amd = image({ os: 'linux', architecture: 'amd64' }, [big], ['/x'])
      await reg.push('tools/big', '1.0', amd.manifest, [amd])
      await mkdir(join(dir, 'storage', 'blobs'), { recursive: true })
      await writeFile(join(dir, 'storage', 'blobs', big.blob.digest.slice(7)), big.blob.data)
      storage.throttle = 1 << 20
      const c = new RegistryClient({
        http: httpDefaults({ backoffMs: 50, connections: new Connections(4, 1 << 20) }),
        mirrors: [parseRegistryMirror(`example.test=http://127.0.0.1:${(front.address() as AddressInfo).port}`)],
        credentials: new DockerCredentials({ configDir: join(dir, 'no-docker-config') }),
      })
      const got = await c.blob(parseImageRef('example.test/tools/big:1.0'), Sha256.fromOci(big.blob.digest), big.blob.size, join(dir, 'partial-big'))
      expect(got.digest.oci).toBe(big.blob.digest)
      const reqs = storage.log.filter((l) => l.path.endsWith(big.blob.digest.slice(7)))
      expect(reqs.length).toBeGreaterThanOrEqual(3)
      expect(reqs.slice(1).every((l) => l.status === 206)).toBe(true)
      expect(reqs.reduce((n, l) => n + l.bytesSent, 0)).toBeLessThan(big.blob.size * 1.1)
    } finally {
      front.close()
      await storage.close()
      await reg.close()
    }
  })

  it('anonymous token flow: resolves a tag, fetches the index, picks linux/arm64 v8, pulls a verified blob', async () => {
    const reg = await startRegistry(join(dir, 'token'), { token: true })
    try {
      const f = await fixtureImages()
      await reg.push('tools/app', '1.0', f.index, [f.amd, f.arm], f.extra)
      const c = client(reg)
      const ref = parseImageRef('example.test/tools/app:1.0')
      const top = await c.resolve(ref)
      expect(top.digest.oci).toBe(f.index.digest)
      const doc = parseManifestDoc(top.data, top.mediaType, 'app')
      expect(doc.kind).toBe('index')
      if (doc.kind !== 'index') return
      expect(selectPlatform(doc.manifests, 'linux/arm64')?.digest.oci).toBe(f.arm.manifest.digest)
      expect(selectPlatform(doc.manifests, 'linux/amd64')?.digest.oci).toBe(f.amd.manifest.digest)
      // The attestation manifest is in the index but never selected.
      expect(doc.manifests).toHaveLength(3)
      const layerBlob = f.amd.layers[0]!
      const got = await c.blob(ref, Sha256.fromOci(layerBlob.digest), layerBlob.size, join(dir, 'partial-1'))
      expect(got.digest.oci).toBe(layerBlob.digest)
      // One anonymous token per repository, reused for the blob.
      expect(reg.tokenRequests).toEqual([{ scope: 'repository:tools/app:pull', basic: undefined }])
    } finally {
      await reg.close()
    }
  })

  it('token flow with credentials from ~/.docker/config.json auths, and through a credential helper', async () => {
    const credentials = { username: 'ops', password: 's3cret' }
    const reg = await startRegistry(join(dir, 'cred'), { token: true, credentials })
    try {
      const f = await fixtureImages()
      await reg.push('tools/app', '1.0', f.index, [f.amd, f.arm], f.extra)
      const ref = parseImageRef('example.test/tools/app:1.0')

      const anon = await client(reg)
        .resolve(ref)
        .catch((e: unknown) => e)
      expect(isKaError(anon) && anon.code).toBe('EREGISTRY')
      expect(String((anon as Error).message)).toMatch(/token service .* HTTP 401; this registry may need credentials/)

      const cfg = join(dir, 'docker-auths')
      await mkdir(cfg, { recursive: true })
      await writeFile(join(cfg, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('ops:s3cret').toString('base64') } } }))
      expect((await client(reg, new DockerCredentials({ configDir: cfg })).resolve(ref)).digest.oci).toBe(f.index.digest)

      const helperCfg = join(dir, 'docker-helper')
      await mkdir(join(helperCfg, 'bin'), { recursive: true })
      await writeFile(join(helperCfg, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'katest' } }))
      const seen: string[] = []
      const run = async (helper: string, server: string) => {
        seen.push(`${helper} ${server}`)
        return server === reg.host
          ? JSON.stringify({ ServerURL: server, Username: 'ops', Secret: 's3cret' })
          : Promise.reject(new Error('credentials not found'))
      }
      expect((await client(reg, new DockerCredentials({ configDir: helperCfg, run })).resolve(ref)).digest.oci).toBe(f.index.digest)
      expect(seen).toEqual([`katest ${reg.host}`])
      expect(reg.tokenRequests.filter((t) => t.basic === 'ops:s3cret').length).toBe(2)
    } finally {
      await reg.close()
    }
  })

  it('a mirror with a path prefix, a single-platform Docker schema 2 image, and OCI error codes', async () => {
    const reg = await startRegistry(join(dir, 'plain'))
    try {
      const base = layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } }, MT.dockerLayer)
      const only = image({ os: 'linux', architecture: 'amd64' }, [base], ['/bin/busybox', 'true'], true)
      await reg.push('mirror/library/tool', 'v1', only.manifest, [only])
      const c = client(reg, undefined, '/mirror')
      const top = await c.resolve(parseImageRef('example.test/library/tool:v1'))
      expect(top.digest.oci).toBe(only.manifest.digest)
      expect(parseManifestDoc(top.data, top.mediaType, 'tool').kind).toBe('manifest')

      const missing = await c.resolve(parseImageRef('example.test/library/tool:nope')).catch((e: unknown) => e)
      expect(isKaError(missing) && missing.facts.registryCode).toBe('MANIFEST_UNKNOWN')
      expect(String((missing as Error).message)).toMatch(/^example\.test\/library\/tool:nope: MANIFEST_UNKNOWN/)
    } finally {
      await reg.close()
    }
  })
})

describe('registry client against a registry that misbehaves', () => {
  it('retries 429 with Retry-After, refuses a manifest that does not match its digest, never forwards Authorization cross-origin', async () => {
    const f = await fixtureImages()
    const blobBytes = f.amd.layers[1]!
    const seen: { path: string; auth?: string }[] = []
    let tooMany = 2
    // A second origin that holds blobs, as registries redirect to object storage.
    const storage = createServer((req, res) => {
      seen.push({ path: `storage${req.url}`, ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) })
      res.writeHead(200, { 'content-length': blobBytes.size }).end(blobBytes.data)
    })
    await new Promise<void>((r) => storage.listen(0, '127.0.0.1', () => r()))
    const storageUrl = `http://127.0.0.1:${(storage.address() as AddressInfo).port}`
    const lying = Buffer.from(f.index.data.toString().replace('"schemaVersion":2', '"schemaVersion":2 '))
    const reg = createServer((req, res) => {
      seen.push({ path: req.url ?? '', ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) })
      if (!req.headers.authorization) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end()
        return
      }
      if (req.url?.includes('/manifests/') && tooMany-- > 0) {
        res.writeHead(429, { 'retry-after': '0', 'content-type': 'application/json' }).end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
        return
      }
      if (req.url?.includes('/manifests/lying')) {
        res.writeHead(200, { 'content-type': MT.ociIndex, 'docker-content-digest': f.index.digest }).end(lying)
        return
      }
      if (req.url?.includes('/manifests/')) {
        res.writeHead(200, { 'content-type': MT.ociIndex, 'docker-content-digest': f.index.digest }).end(f.index.data)
        return
      }
      res.writeHead(307, { location: `${storageUrl}/blob?sig=abc` }).end()
    })
    await new Promise<void>((r) => reg.listen(0, '127.0.0.1', () => r()))
    const regUrl = `http://127.0.0.1:${(reg.address() as AddressInfo).port}`
    try {
      const cfg = join(dir, 'basic')
      await mkdir(cfg, { recursive: true })
      await writeFile(join(cfg, 'config.json'), JSON.stringify({ auths: { [new URL(regUrl).host]: { username: 'u', password: 'p' } } }))
      const c = new RegistryClient({
        http: httpDefaults({ backoffMs: 10 }),
        mirrors: [parseRegistryMirror(`example.test=${regUrl}`)],
        credentials: new DockerCredentials({ configDir: cfg }),
      })
      const ref = parseImageRef('example.test/app:1.0')
      expect((await c.resolve(ref)).digest.oci).toBe(f.index.digest)
      expect(seen.filter((s) => s.path.includes('/manifests/')).length).toBe(4) // 401, 429, 429, 200

      const lie = await c.resolve(parseImageRef('example.test/app:lying')).catch((e: unknown) => e)
      expect(isKaError(lie) && lie.code).toBe('EINTEGRITY')
      expect(String((lie as Error).message)).toMatch(/^example\.test\/app:1?.*lying: expected sha256/)

      await c.blob(ref, Sha256.fromOci(blobBytes.digest), blobBytes.size, join(dir, 'partial-redirect'))
      const hop = seen.find((s) => s.path.startsWith('storage'))
      expect(hop).toBeDefined()
      expect(hop!.auth).toBeUndefined()
      expect(seen.find((s) => s.path.includes('/blobs/'))?.auth).toMatch(/^Basic /)
    } finally {
      await new Promise<void>((r) => reg.close(() => r()))
      await new Promise<void>((r) => storage.close(() => r()))
    }
  })

  it('parses challenges', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:calico/node:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:calico/node:pull' },
    })
  })
})

describe('image references', () => {
  it('canonicalizes the way containerd names images', () => {
    expect(parseImageRef('calico/node:v3.28.0')).toMatchObject({ registry: 'docker.io', repository: 'calico/node', tag: 'v3.28.0' })
    expect(parseImageRef('busybox')).toMatchObject({ registry: 'docker.io', repository: 'library/busybox', tag: 'latest' })
    expect(parseImageRef('registry.k8s.io/coredns/coredns:v1.11.1')).toMatchObject({ registry: 'registry.k8s.io', repository: 'coredns/coredns' })
    expect(parseImageRef('localhost:5000/x:1').registry).toBe('localhost:5000')
    expect(() => parseImageRef('Upper/Case:1')).toThrow(/bad repository/)
  })
})
