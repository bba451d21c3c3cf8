import { Sha256 } from './digest.js'
import { KaError } from './errors.js'

/**
 * An image reference in canonical form, the way containerd and kubelet name images:
 * `docker.io/calico/node:v3.28.0`, `registry.k8s.io/pause:3.9`. Parsed once; the canonical
 * string is what the bundle writes as `io.containerd.image.name` and what the node looks up.
 */
export interface ImageRef {
  registry: string
  repository: string
  tag?: string
  digest?: Sha256
}

const DOCKER_HUB = 'docker.io'
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
/** A registry is host[:port]: DNS labels or an IPv4 address, then an optional port. */
const REGISTRY = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d{1,5})?$/

export function parseImageRef(text: string): ImageRef {
  const bad = (why: string): never => {
    throw new KaError('EUSAGE', `image ${JSON.stringify(text)}: ${why}; write it like registry.k8s.io/pause:3.9 or docker.io/calico/node:v3.28.0`)
  }
  let rest = text.trim()
  let digest: Sha256 | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    try {
      digest = Sha256.fromOci(rest.slice(at + 1))
    } catch {
      bad('the digest is not sha256:<64 hex>')
    }
    rest = rest.slice(0, at)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) bad(`bad tag ${JSON.stringify(tag)}`)
  }
  const parts = rest.split('/')
  let registry = DOCKER_HUB
  const first = parts[0] ?? ''
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first === 'index.docker.io' || first === 'registry-1.docker.io' ? DOCKER_HUB : first
    if (!REGISTRY.test(registry)) bad(`the registry ${JSON.stringify(registry)} is not host[:port]`)
    parts.shift()
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library')
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) bad('bad repository name (lower case letters, digits and separators only)')
  if (!tag && !digest) tag = 'latest'
  return { registry, repository: parts.join('/'), ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) }
}

/** `registry/repository:tag` (no digest): the name an image has on the node. */
export const imageName = (r: ImageRef): string => `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ''}`

/** The full reference, with the digest when there is one. */
export const formatImageRef = (r: ImageRef): string => `${imageName(r)}${r.digest ? `@${r.digest.oci}` : ''}`
