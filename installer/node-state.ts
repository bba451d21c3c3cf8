import { createServer } from 'node:net'
import { readdir, readFile, readlink } from 'node:fs/promises'
import type { Host } from './host.js'
import { PROC_MODULES, PROC_SWAPS, RESOLV_CONF, SYSTEMD_RESOLV_CONF } from './node-paths.js'

/** Live kernel state the phases and doctor read (under --root too). */

/** The active swap areas, one /proc/swaps line each (the header left out). */
export async function activeSwaps(host: Host): Promise<string[]> {
  return ((await host.readText(PROC_SWAPS)) ?? '')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
}

/** The names of the loaded kernel modules. */
export async function loadedModules(host: Host): Promise<Set<string>> {
  return new Set(((await host.readText(PROC_MODULES)) ?? '').split('\n').map((l) => l.split(' ')[0]!))
}

/** Who listens on a TCP port: the process, its command name and its systemd unit, as /proc tells. */
export interface Listener {
  pid: number
  command: string
  unit?: string
}

/**
 * The process listening on `port` (any address, IPv4 or IPv6), from /proc/net/tcp{,6} and the
 * socket inodes in /proc/<pid>/fd. Always the live machine's /proc: a listener is real even
 * under --root. Undefined when nothing listens, or the owner cannot be seen.
 */
export async function listenerOn(port: number, proc = '/proc'): Promise<Listener | undefined> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set<string>()
  for (const table of ['net/tcp', 'net/tcp6']) {
    const text = await readFile(`${proc}/${table}`, 'utf8').catch(() => '')
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address is ADDR:PORT; state 0A is LISTEN; the inode is the 10th field.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] && f[9] !== '0') inodes.add(f[9])
    }
  }
  if (inodes.size === 0) return undefined
  for (const pid of (await readdir(proc).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d))) {
    const fds = await readdir(`${proc}/${pid}/fd`).catch(() => [] as string[])
    for (const fd of fds) {
      const target = await readlink(`${proc}/${pid}/fd/${fd}`).catch(() => '')
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
      if (!inode || !inodes.has(inode)) continue
      const command = (await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '?')).trim()
      const cgroup = await readFile(`${proc}/${pid}/cgroup`, 'utf8').catch(() => '')
      const unit = /\/([^/\n]+\.(?:service|scope))\s*$/m.exec(cgroup)?.[1]
      return { pid: Number(pid), command, ...(unit ? { unit } : {}) }
    }
  }
  return undefined
}

/** Whether nothing listens on `port` (any address): this machine's, even under --root. */
export async function portFree(port: number, tries = 3): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 150))
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)))
    })
    // A port bound only for a moment (another check like this one, a scanner) is free again
    // at once; a listener is not.
    if (free) return true
  }
  return false
}

export const describeListener = (l: Listener | undefined): string =>
  l ? `${l.command} (pid ${l.pid}${l.unit ? `, ${l.unit}` : ''})` : 'a process this installer cannot see'

/** Whether systemd reports a unit active (a query: it runs in a dry run too). */
export const unitActive = async (host: Host, unit: string): Promise<boolean> =>
  (await host.run(['systemctl', 'is-active', unit], { changing: false })).code === 0

/**
 * The resolver file the kubelet hands to pods of dnsPolicy Default, CoreDNS among them, as
 * kubeadm decides it (cmd/kubeadm/app/componentconfigs/kubelet.go: kubeletSystemdResolverConfig
 * while isServiceActive("systemd-resolved")): systemd-resolved's own list when it runs (on
 * Ubuntu 22.04 and 24.04 /etc/resolv.conf names only its 127.0.0.53 stub), else /etc/resolv.conf.
 */
export async function kubeletResolvConf(host: Host): Promise<string> {
  return (await unitActive(host, 'systemd-resolved')) ? SYSTEMD_RESOLV_CONF : RESOLV_CONF
}

/**
 * The nameservers CoreDNS could forward to: those in the kubelet's resolver file, loopback ones
 * aside (CoreDNS would ask itself, and its loop plugin stops it).
 */
export async function nameservers(host: Host): Promise<{ file: string; servers: string[] }> {
  const file = await kubeletResolvConf(host)
  const servers = ((await host.readText(file)) ?? '')
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((n): n is string => !!n && !/^(127\.|::1$)/.test(n))
  return { file, servers }
}

/** What to do about a node with no nameserver CoreDNS can use, for the file the kubelet reads. */
export const nameserverFix = (file: string): string =>
  file === SYSTEMD_RESOLV_CONF
    ? 'give systemd-resolved a DNS server CoreDNS can forward to: DNS=<IP> in /etc/systemd/resolved.conf (a DNS server inside the network; any reachable address keeps CoreDNS running, cluster names resolve either way), then systemctl restart systemd-resolved and restart the coredns pods'
    : NAMESERVER_FIX

export const NAMESERVER_FIX = `give the node a resolver CoreDNS can forward to: a "nameserver <IP>" line in ${RESOLV_CONF} (a DNS server inside the network; any reachable address keeps CoreDNS running, cluster names resolve either way), then restart the coredns pods`
