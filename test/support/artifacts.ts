import { execFileSync } from 'node:child_process'
import { chmod, copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Want } from '../../builder/lock.js'
import { urlBaseName } from '../../builder/components.js'

/**
 * Upstream artifacts with the real shapes, made on this machine. `realistic` uses real
 * binaries where they run here (Debian's containerd, ctr, shim, runc and CNI plugins; this
 * machine's node packaged like nodejs.org's tarball) and recording scripts where they
 * cannot (kubeadm, kubelet, kubectl, crictl, calicoctl: there is no way to run them here;
 * each appends its arguments to $KA_RECORD). Otherwise only the runtime tarball is real in
 * shape, with a tiny stand-in binary, which is all the builder's tests need.
 */
/**
 * What the kubeadm and kubectl stand-ins do beyond recording: keep a copy of every file
 * they are given (--config, -f) in $KA_RECORD.d for the test to check, and leave the state
 * the installer looks for next (admin.conf and the CA certificate, $KA_CA_CRT, after init;
 * kubelet.conf after join; Calico's DaemonSet after apply; a Ready node).
 */
const EMULATE: Record<string, string> = {
  kubeadm: `[ -n "\${KA_RECORD:-}" ] || exit 0
mkdir -p "$KA_RECORD.d"; n=$(ls "$KA_RECORD.d" | wc -l)
prev=""; for a in "$@"; do [ "$prev" = "--config" ] && cp "$a" "$KA_RECORD.d/$n-kubeadm-$1.yaml"; prev="$a"; done
case "$1" in
  init) if [ "\${2:-}" != phase ]; then mkdir -p "$KA_ROOT/etc/kubernetes/pki"; cp "$KA_CA_CRT" "$KA_ROOT/etc/kubernetes/pki/ca.crt"; echo "apiVersion: v1 # test admin kubeconfig" > "$KA_ROOT/etc/kubernetes/admin.conf"; fi ;;
  join) mkdir -p "$KA_ROOT/etc/kubernetes"; echo "# test kubelet kubeconfig" > "$KA_ROOT/etc/kubernetes/kubelet.conf" ;;
  reset) rm -rf "$KA_ROOT/etc/kubernetes" "$KA_ROOT/var/lib/kubelet" ;;
  token) echo "fresh1.0123456789abcdef" ;;
  config)
    case "$2" in
      # What kubeadm 1.29.3 prints offline; a test names other images in $KA_KUBEADM_IMAGES.
      images) v=$5; if [ -n "\${KA_KUBEADM_IMAGES:-}" ]; then printf '%s\\n' $KA_KUBEADM_IMAGES; else
        for n in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "registry.k8s.io/$n:$v"; done
        printf 'registry.k8s.io/coredns/coredns:v1.11.1\\nregistry.k8s.io/pause:3.9\\nregistry.k8s.io/etcd:3.5.12-0\\n'; fi ;;
      validate) grep -qE '^kind: (Init|Join)Configuration$' "$4" || { echo "no InitConfiguration or JoinConfiguration in $4" >&2; exit 1; } ;;
    esac ;;
esac`,
  kubectl: `[ -n "\${KA_RECORD:-}" ] || exit 0
mkdir -p "$KA_RECORD.d"; n=$(ls "$KA_RECORD.d" | wc -l)
prev=""; for a in "$@"; do [ "$prev" = "-f" ] && cp "$a" "$KA_RECORD.d/$n-kubectl-apply.yaml" && touch "$KA_ROOT/.calico-applied"; prev="$a"; done
case "$*" in
  *"get daemonset calico-node"*) [ -e "$KA_ROOT/.calico-applied" ] || exit 1 ;;
  *"get nodes -o jsonpath={.items[*].metadata.name}"*) printf 'k8s01' ;;
  *"get configmap coredns"*) if [ -e "$KA_ROOT/.coredns-local" ]; then printf '.:53 {\\n    errors\\n    cache 30\\n}\\n'; else printf '.:53 {\\n    errors\\n    forward . /etc/resolv.conf {\\n       max_concurrent 1000\\n    }\\n    cache 30\\n}\\n'; fi ;;
  *"rollout restart deployment coredns"*) touch "$KA_ROOT/.coredns-local" ;;
  *"get nodes"*) printf True ;;
  *"get pods"*) echo "calico-node-abcde   1/1   Running   0   1m"; echo "etcd-k8s01   1/1   Running   0   1m" ;;
esac`,
}

export async function makeArtifacts(dir: string, realistic: boolean): Promise<(w: Want) => Promise<Buffer | undefined>> {
  await mkdir(dir, { recursive: true })
  const made = new Map<string, Buffer>()
  const sh = (cmd: string, cwd = dir) => execFileSync('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'ignore', 'inherit'] })

  const recorder = (name: string) =>
    Buffer.from(
      `#!/bin/sh\n# kube-airgap test stand-in for ${name}: the real one cannot run here. It records its arguments.\necho "${name} $*" >> "\${KA_RECORD:-/dev/null}"\n${EMULATE[name] ?? ''}\nexit 0\n`,
    )

  const tarball = async (name: string, files: Record<string, Buffer | string>, compress: string): Promise<Buffer> => {
    const stage = join(dir, `stage-${name}`)
    await rm(stage, { recursive: true, force: true })
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(join(stage, rel, '..'), { recursive: true })
      if (typeof content === 'string') await copyFile(content, join(stage, rel))
      else await writeFile(join(stage, rel), content)
      await chmod(join(stage, rel), 0o755)
    }
    sh(`tar --sort=name --mtime=2000-01-01 --owner=0 --group=0 -C ${stage} -cf - $(ls ${stage}) | ${compress} > ${join(dir, name)}`)
    return readFile(join(dir, name))
  }

  return async (w: Want) => {
    const key = w.url
    if (made.has(key)) return made.get(key)
    const base = urlBaseName(w.url)
    let out: Buffer | undefined
    if (w.name === 'node') {
      const top = base.replace(/\.tar\.xz$/, '')
      out = await tarball(
        base,
        { [`${top}/bin/node`]: realistic ? process.execPath : Buffer.from('#!/bin/sh\necho "stand-in node"\n'), [`${top}/LICENSE`]: Buffer.from('MIT\n') },
        'xz -0 -T2',
      )
    } else if (realistic && w.name === 'containerd') {
      out = await tarball(
        base,
        { 'bin/containerd': '/usr/bin/containerd', 'bin/containerd-shim-runc-v2': '/usr/bin/containerd-shim-runc-v2', 'bin/ctr': '/usr/bin/ctr' },
        'gzip -1',
      )
    } else if (realistic && w.name === 'runc') {
      out = await readFile('/usr/sbin/runc')
    } else if (realistic && w.name === 'cni-plugins') {
      const plugins: Record<string, string> = {}
      for (const p of await readdir('/usr/lib/cni')) plugins[p] = join('/usr/lib/cni', p)
      out = await tarball(base, plugins, 'gzip -1')
    } else if (realistic && w.name === 'crictl') {
      out = await tarball(base, { crictl: recorder('crictl') }, 'gzip -1')
    } else if (realistic && ['kubeadm', 'kubelet', 'kubectl', 'calicoctl'].includes(w.name)) {
      out = recorder(w.name)
    }
    if (out) made.set(key, out)
    return out
  }
}
