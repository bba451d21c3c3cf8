import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

export interface Credential {
  username: string
  password: string
}

/** Runs `docker-credential-<helper> get` with the server on stdin; resolves its stdout. */
export type HelperRunner = (helper: string, server: string) => Promise<string>

export const runHelper: HelperRunner = (helper, server) =>
  new Promise((resolve, reject) => {
    const child = execFile(`docker-credential-${helper}`, ['get'], { timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`docker-credential-${helper}: ${String(stderr || err.message).trim()}`)) : resolve(stdout),
    )
    child.stdin?.end(server)
  })

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>
  credHelpers?: Record<string, string>
  credsStore?: string
}

/**
 * Registry credentials the way docker and skopeo find them: `$DOCKER_CONFIG/config.json`
 * (else `~/.docker/config.json`): a per-registry `credHelpers` entry, else the `credsStore`,
 * else the base64 `auth` (or username/password) in `auths`. Nothing found means anonymous.
 * Credentials are handed to the registry client only; they never reach a log or the bundle.
 */
export class DockerCredentials {
  private config: Promise<DockerConfig> | undefined
  private cache = new Map<string, Promise<Credential | undefined>>()

  constructor(private readonly opts: { configDir?: string; run?: HelperRunner } = {}) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env, run: HelperRunner = runHelper): DockerCredentials {
    return new DockerCredentials({ configDir: env.DOCKER_CONFIG || join(homedir(), '.docker'), run })
  }

  get(host: string): Promise<Credential | undefined> {
    let c = this.cache.get(host)
    if (!c) {
      c = this.lookup(host)
      this.cache.set(host, c)
    }
    return c
  }

  private async lookup(host: string): Promise<Credential | undefined> {
    this.config ??= readFile(join(this.opts.configDir ?? join(homedir(), '.docker'), 'config.json'), 'utf8').then(
      (t) => JSON.parse(t) as DockerConfig,
      () => ({}),
    )
    const config = await this.config
    const keys = keysFor(host)
    const helper = keys.map((k) => config.credHelpers?.[k]).find(Boolean) ?? config.credsStore
    if (helper) {
      for (const server of keys) {
        const out = await (this.opts.run ?? runHelper)(helper, server).catch(() => undefined)
        if (!out) continue
        const parsed = JSON.parse(out) as { Username?: string; Secret?: string }
        if (parsed.Username && parsed.Secret) return { username: parsed.Username, password: parsed.Secret }
      }
      if (config.credHelpers?.[host]) return undefined
    }
    for (const k of keys) {
      const a = config.auths?.[k]
      if (!a) continue
      if (a.auth) {
        const [username, ...rest] = Buffer.from(a.auth, 'base64').toString('utf8').split(':')
        if (username) return { username, password: rest.join(':') }
      }
      if (a.username && a.password) return { username: a.username, password: a.password }
    }
    return undefined
  }
}

/** The spellings under which docker stores a registry's credentials. */
function keysFor(host: string): string[] {
  const hub = host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io'
  return hub
    ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io']
    : [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`]
}
