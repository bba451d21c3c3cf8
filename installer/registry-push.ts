import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { request } from 'node:https'
import type { Readable } from 'node:stream'
import type { Bundle } from '../bundle/open.js'
import { KaError } from '../bundle/errors.js'
import { hostPort, pushTarget, type RegistryConfig } from './registry.js'

/** Where pushes go: the registry, the CA its certificate chains to, and its credentials (user:password) when it asks for them. */
export interface PushTarget {
  registry: RegistryConfig
  ca: string
  credentials?: string
  /** The address to connect to (the name's host when left out). */
  connectTo?: string
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request of the registry API (distribution's HTTP API v2), with basic auth when given. */
function call(t: PushTarget, method: string, path: string, headers: Record<string, string | number> = {}, body?: Buffer | Readable): Promise<Answer> {
  const { host, port } = hostPort(t.registry)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: t.connectTo ?? host,
        port,
        method,
        path,
        servername: host,
        ca: t.ca,
        headers: { ...headers, ...(t.credentials ? { authorization: `Basic ${Buffer.from(t.credentials).toString('base64')}` } : {}) },
      },
      (res) => {
        let text = ''
        res.on('data', (d: Buffer) => {
          if (text.length < 4096) text += d.toString()
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
        res.on('error', reject)
      },
    )
    req.on('error', (e) => reject(new KaError('ESTEP', `https://${t.registry.name}${path}: ${e.message}`)))
    if (!body) req.end()
    else if (Buffer.isBuffer(body)) req.end(body)
    else body.pipe(req)
  })
}

const refused = (what: string, a: Answer): KaError =>
  new KaError(
    'ESTEP',
    a.status === 401
      ? `the registry refused ${what}: it asks for credentials (join/registry-credentials in the bundle folder, which ./install registry wrote on the registry node)`
      : `the registry answered ${a.status} to ${what}: ${a.body.trim().split('\n')[0] ?? ''}`,
    { status: a.status },
  )

/** A blob into a repository, unless it is there: a monolithic upload (POST, then PUT ?digest=). The registry checks the digest of what it receives. */
async function pushBlob(t: PushTarget, repository: string, digest: string, path: string): Promise<boolean> {
  const head = await call(t, 'HEAD', `/v2/${repository}/blobs/${digest}`)
  if (head.status === 200) return false
  if (head.status === 401) throw refused(`${repository}`, head)
  const start = await call(t, 'POST', `/v2/${repository}/blobs/uploads/`, { 'content-length': 0 })
  const location = start.headers.location
  if (start.status !== 202 || typeof location !== 'string') throw refused(`an upload to ${repository}`, start)
  const url = new URL(location, `https://${t.registry.name}`)
  url.searchParams.set('digest', digest)
  const size = (await stat(path)).size
  const put = await call(
    t,
    'PUT',
    `${url.pathname}${url.search}`,
    { 'content-type': 'application/octet-stream', 'content-length': size },
    createReadStream(path),
  )
  if (put.status !== 201) throw refused(`blob ${digest} of ${repository}`, put)
  return true
}

/**
 * Every image of an (image) bundle into the registry: its blobs, then its manifest by digest
 * and under its tag, at the image's path without its registry (docker.io/library/nginx:1.25 is
 * <registry>/library/nginx:1.25, which a node's docker.io mirror rule also finds). Returns what
 * was pushed, each with how many blobs were new.
 */
export async function pushImages(bundle: Bundle, t: PushTarget): Promise<{ image: string; pushed: string; digest: string; newBlobs: number }[]> {
  const out = []
  for (const image of bundle.images) {
    const { repository, tag } = pushTarget(image.name)
    const blobs = await bundle.layout.blobsOf(image.manifest)
    let newBlobs = 0
    for (const d of blobs.slice(1)) if (await pushBlob(t, repository, d.oci, bundle.layout.blobPath(d))) newBlobs++
    const manifest = await readFile(bundle.layout.blobPath(image.manifest))
    for (const ref of [image.manifest.oci, ...(tag ? [tag] : [])]) {
      const put = await call(t, 'PUT', `/v2/${repository}/manifests/${ref}`, { 'content-type': image.mediaType, 'content-length': manifest.length }, manifest)
      if (put.status !== 201) throw refused(`the manifest of ${image.name}`, put)
      const said = put.headers['docker-content-digest']
      if (said !== undefined && said !== image.manifest.oci)
        throw new KaError(
          'ESTEP',
          `the registry stored ${image.name}'s manifest as ${String(said)}, not ${image.manifest.oci}: it is not the registry it claims to be`,
        )
    }
    out.push({
      image: image.name,
      pushed: `${t.registry.name}/${repository}${tag ? `:${tag}` : ''}@${image.manifest.oci}`,
      digest: image.manifest.oci,
      newBlobs,
    })
  }
  return out
}
