import { connect } from 'node:net'
import type { Finding } from './checks.js'
import { APISERVER_PROXY, APISERVER_PROXY_CONFIG, APISERVER_PROXY_SOCKET, HAPROXY } from './node-paths.js'
import type { Context } from './plan.js'
import { HEADER } from './templates.js'

/**
 * The control-plane endpoint the bundle itself provides when the operator has no load
 * balancer or virtual IP (cluster.yaml `endpoint: local`, the kubeasz and Kubespray way):
 * HAProxy on every node, masters included, listening on 127.0.0.1 only and spreading
 * connections over every master's API server that answers /readyz. kubeadm's
 * controlPlaneEndpoint is that address, so the kubelet, kube-proxy and the kubeconfigs
 * kubeadm writes all use it; the scheduler and controller manager keep talking to their
 * own master's API server (kubeadm writes theirs with the local endpoint).
 *
 * Port 7443, not 6443: the API server listens on 6443 on every address of a master, and a
 * listener on 127.0.0.1:6443 beside it could not bind. k0s's node-local load balancing uses
 * 7443 for the same reason.
 */
export const LOCAL_ENDPOINT = { host: '127.0.0.1', port: 7443 } as const
export const localEndpoint = (): string => `${LOCAL_ENDPOINT.host}:${LOCAL_ENDPOINT.port}`

/** How often a master is checked, and after how many failed (or passed) checks in a row it leaves (or rejoins). */
export const HEALTH = { intervalSeconds: 2, fall: 2, rise: 2, timeoutSeconds: 2 } as const
/** The longest a dead master keeps getting new connections: its failed checks in a row, each at most an interval plus its timeout. */
export const DOWN_WITHIN_SECONDS = HEALTH.fall * (HEALTH.intervalSeconds + HEALTH.timeoutSeconds)

export interface Backend {
  /** The master's node name (HAProxy's server name, as doctor reports it). */
  name: string
  address: string
  port?: number
}

export interface ProxySettings {
  /** host:port it listens on. */
  listen: string
  backends: Backend[]
  /** Its runtime API (doctor reads which masters answer there). */
  socket: string
}

/**
 * HAProxy's configuration for the local endpoint. TCP mode: TLS goes through untouched, so
 * every client still checks the API server's own certificate. Each master is checked with
 * GET /readyz over TLS (anonymous access to it is Kubernetes' default), so a master whose
 * API server runs but is not ready gets no connections; a connection to a master that died
 * between two checks is retried on another (`option redispatch`). Long timeouts: watches
 * are long-lived connections the API server itself ends after at most 30 minutes.
 */
export function haproxyConfig(s: ProxySettings): string {
  const h = HEALTH
  return `${HEADER}# The local endpoint of the Kubernetes API (cluster.yaml: endpoint: local): every client on this
# node reaches the API at ${s.listen}, spread over the masters that answer /readyz.
global
    maxconn 4000
    stats socket ${s.socket} mode 600 level user

defaults
    mode tcp
    option dontlognull
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    timeout check ${h.timeoutSeconds}s
    retries 3
    option redispatch

frontend kube-apiserver
    bind ${s.listen}
    default_backend masters

backend masters
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server check check-ssl verify none inter ${h.intervalSeconds}s fall ${h.fall} rise ${h.rise}
${s.backends.map((b) => `    server ${b.name} ${b.address}:${b.port ?? 6443}\n`).join('')}`
}

/** The node's proxy: its configuration for these masters. */
export const nodeProxyConfig = (masters: Backend[]): string => haproxyConfig({ listen: localEndpoint(), backends: masters, socket: APISERVER_PROXY_SOCKET })

/**
 * Its own systemd unit, beside (not instead of) the distribution's haproxy.service, which
 * stays the site's. -Ws: master-worker mode with systemd's notify protocol, as Debian's and
 * Fedora's own units run HAProxy; a reload (new masters) keeps the connections it has.
 */
export const proxyUnit = (): string => `${HEADER}[Unit]
Description=kube-airgap: the local endpoint of the Kubernetes API (HAProxy on ${localEndpoint()})
After=network-online.target
Wants=network-online.target
Before=kubelet.service

[Service]
Type=notify
ExecStartPre=${HAPROXY} -c -q -f ${APISERVER_PROXY_CONFIG}
ExecStart=${HAPROXY} -Ws -f ${APISERVER_PROXY_CONFIG}
ExecReload=${HAPROXY} -c -q -f ${APISERVER_PROXY_CONFIG}
ExecReload=/bin/kill -USR2 $MAINPID
Restart=always
RestartSec=2s

[Install]
WantedBy=multi-user.target
`

/** One line of HAProxy's `show stat` (CSV): which server of which proxy, and its state (UP, DOWN, MAINT, ...). */
export function serverStates(showStat: string): { backend: string; server: string; status: string }[] {
  const [head, ...rows] = showStat.split('\n').filter((l) => l.trim())
  const cols = (head ?? '').replace(/^# /, '').split(',')
  const at = (name: string) => cols.indexOf(name)
  return rows
    .map((r) => r.split(','))
    .filter((f) => f[at('svname')] !== 'FRONTEND' && f[at('svname')] !== 'BACKEND')
    .map((f) => ({ backend: f[at('pxname')]!, server: f[at('svname')]!, status: f[at('status')]! }))
}

/** HAProxy's runtime API answer to `show stat` (CSV), or undefined when nothing answers at `socket`. */
export const showStat = (socket: string): Promise<string | undefined> =>
  new Promise((resolve) => {
    const c = connect(socket)
    let text = ''
    c.setTimeout(3000, () => c.destroy())
    c.on('data', (d) => (text += d))
    c.on('end', () => resolve(text))
    c.on('close', () => resolve(text || undefined))
    c.on('error', () => resolve(undefined))
    c.end('show stat\n')
  })

/**
 * Doctor on a node with the local endpoint (its config written): which masters the proxy
 * sends to, as HAProxy itself sees them. None up is a failure (nothing on this node reaches
 * the API); some down, a warning naming them.
 */
export async function endpointFindings(ctx: Context): Promise<Finding[]> {
  const config = await ctx.host.readText(APISERVER_PROXY_CONFIG)
  if (config === undefined) return []
  const check = `local endpoint ${localEndpoint()}`
  const stat = await showStat(ctx.host.path(APISERVER_PROXY_SOCKET))
  if (stat === undefined)
    return [
      {
        level: 'fail',
        check,
        found: `${APISERVER_PROXY} does not answer (${APISERVER_PROXY_SOCKET})`,
        fix: `systemctl status ${APISERVER_PROXY}; journalctl -u ${APISERVER_PROXY}`,
      },
    ]
  const masters = serverStates(stat).filter((s) => s.backend === 'masters')
  const up = masters.filter((m) => m.status.startsWith('UP')).map((m) => m.server)
  const down = masters.filter((m) => !m.status.startsWith('UP')).map((m) => `${m.server} (${m.status})`)
  if (!up.length)
    return [
      {
        level: 'fail',
        check,
        found: `no master answers /readyz: ${down.join(', ')}`,
        fix: 'on each master: crictl ps -a | grep kube-apiserver, and its logs; from here: curl -k https://<master>:6443/readyz',
      },
    ]
  if (down.length)
    return [
      {
        level: 'warn',
        check,
        found: `up: ${up.join(', ')}; not answering: ${down.join(', ')}`,
        fix: 'on those masters: crictl ps -a | grep kube-apiserver, and its logs',
      },
    ]
  return [{ level: 'ok', check, found: `every master answers: ${up.join(', ')}` }]
}
