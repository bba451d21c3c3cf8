import { execFileSync } from 'node:child_process'
import { chmod, copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Want } from '../../builder/lock/lock.js'
import yaml from 'js-yaml'
import { urlBaseName } from '../../builder/lock/components.js'
import { REPO } from './fake-upstream.js'

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
  kubeadm: `[ "$1 \${2:-}" = "version -o" ] && { echo "v$VERSION"; exit 0; }
# config images list answers anywhere (bundle lock runs it with an empty environment); the rest records.
[ -n "\${KA_RECORD:-}" ] || [ "$1 \${2:-}" = "config images" ] || exit 0
[ -z "\${KA_RECORD:-}" ] || { mkdir -p "$KA_RECORD.d"; n=$(ls "$KA_RECORD.d" | wc -l); }
prev=""; cfg=""; for a in "$@"; do [ "$prev" = "--config" ] && cp "$a" "$KA_RECORD.d/$n-kubeadm-$1.yaml" && cfg="$a"; prev="$a"; done
# With $KA_CLUSTER (a folder the nodes of one test cluster share): the node is registered
# there under its nodeRegistration name and its kubelet started; the first master is named as the one whose
# static pod manifest says the API server's version.
register() {
  [ -n "\${KA_CLUSTER:-}" ] || return 0
  mkdir -p "$KA_CLUSTER/nodes" "$KA_ROOT/.systemctl"; name=$(sed -n 's/^  name: //p' "$cfg" | head -1)
  echo "$KA_ROOT $1" > "$KA_CLUSTER/nodes/$name"
  "$KA_ROOT/usr/local/bin/kubelet" --version > "$KA_ROOT/.systemctl/running.kubelet" && touch "$KA_ROOT/.systemctl/active.kubelet"
}
# kubeadm init's phases in its order (cmd/kubeadm/app/cmd/init.go: NewInitCmd's AppendPhase
# calls), each leaving what the real one leaves: the kubeconfig phase writes admin.conf and a
# kubelet.conf with its client certificate inside; wait-control-plane is where the field
# notes' image and cgroup errors stop it; from then on the API server answers ($KA_ROOT/.cluster/api)
# and each phase leaves the object it makes there; kubelet-finalize points kubelet.conf at
# the rotated certificate (phases/kubelet/kubelet-finalize.go). $KA_KUBEADM_FAIL_AT=<phase>
# stops it there, exit 1, as kubeadm does ("error execution phase ..."), the phases before
# it done. The same for join's control-plane-join (cmd/kubeadm/app/cmd/join.go).
state="$KA_ROOT/.cluster"
# The kubelet's configuration, as kubelet-start writes it (phases/kubelet/kubelet.go): init's from
# the KubeletConfiguration it was given, join's from the cluster's kubelet-config ConfigMap (which
# init's made: systemd here); kubeadm's defaults keep client certificate rotation on.
kubelet_config() {
  mkdir -p "$KA_ROOT/var/lib/kubelet"
  { echo "apiVersion: kubelet.config.k8s.io/v1beta1"; echo "kind: KubeletConfiguration"
    grep -m1 '^cgroupDriver:' "$cfg" || echo "cgroupDriver: systemd"; echo "rotateCertificates: true"; } > "$KA_ROOT/var/lib/kubelet/config.yaml"
}
stop_at() { [ "\${KA_KUBEADM_FAIL_AT:-}" != "$1" ] || { echo "error execution phase $1: timed out waiting for the condition (a test's kubeadm that stops at $1)" >&2; exit 1; }; }
api() { [ -e "$state/api" ] || { echo "error execution phase $1: unable to connect to the API server: connection refused" >&2; exit 1; }; }
init_phase() {
  stop_at "$1"; mkdir -p "$state"
  case "$1" in
    certs) mkdir -p "$KA_ROOT/etc/kubernetes/pki"; cp "$KA_CA_CRT" "$KA_ROOT/etc/kubernetes/pki/ca.crt" ;;
    # admin.conf and kubelet.conf name controlPlaneEndpoint as their server, controller-manager.conf
    # and scheduler.conf the node's own API server (phases/kubeconfig/kubeconfig.go:
    # getKubeConfigSpecsBase, LocalAPIEndpoint for those two since 1.27); the server line only.
    kubeconfig) ep=$(sed -n 's/^controlPlaneEndpoint: //p' "$cfg" | head -1); own=$(sed -n 's/^  advertiseAddress: //p' "$cfg" | head -1)
      printf 'apiVersion: v1 # test admin kubeconfig\nserver: https://%s\n' "$ep" > "$KA_ROOT/etc/kubernetes/admin.conf"
      printf 'apiVersion: v1 # test kubelet kubeconfig\nserver: https://%s\nclient-certificate-data: embedded\n' "$ep" > "$KA_ROOT/etc/kubernetes/kubelet.conf"
      for f in controller-manager scheduler; do printf 'apiVersion: v1 # test kubeconfig\nserver: https://%s:6443\n' "$own" > "$KA_ROOT/etc/kubernetes/$f.conf"; done ;;
    control-plane) mkdir -p "$KA_ROOT/etc/kubernetes/manifests"; echo "image: registry.k8s.io/kube-apiserver:v$VERSION" > "$KA_ROOT/etc/kubernetes/manifests/kube-apiserver.yaml" ;;
    etcd) ;;
    kubelet-start) kubelet_config; register node ;;
    wait-control-plane) touch "$state/api" ;;
    mark-control-plane) api "$1"; register control-plane; sed -n 's/^  name: //p' "$cfg" | head -1 > "$state/$1" ;;
    kubelet-finalize) api "$1"; printf 'apiVersion: v1 # test kubelet kubeconfig\nserver: https://%s\nclient-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n' "$(sed -n 's/^controlPlaneEndpoint: //p' "$cfg" | head -1)" > "$KA_ROOT/etc/kubernetes/kubelet.conf" ;;
    *) api "$1"; touch "$state/$1" ;;
  esac
}
case "$1" in
  init) if [ "\${2:-}" != phase ]; then
      for p in certs kubeconfig etcd control-plane kubelet-start wait-control-plane upload-config upload-certs mark-control-plane bootstrap-token kubelet-finalize addon; do init_phase "$p"; done
      [ -z "\${KA_CLUSTER:-}" ] || echo "$KA_ROOT" > "$KA_CLUSTER/first-master"
    else init_phase "$3"; fi ;;
  join) cp_join() { stop_at control-plane-join; register control-plane; mkdir -p "$state"; sed -n 's/^  name: //p' "$cfg" | head -1 > "$state/mark-control-plane"; }
    if [ "\${2:-}" = phase ]; then cp_join; exit 0; fi
    # The server a joined node's kubeconfigs name: the endpoint it discovered the cluster at.
    ep=$(sed -n 's/^ *apiServerEndpoint: //p' "$cfg" | head -1)
    mkdir -p "$KA_ROOT/etc/kubernetes"; printf '# test kubelet kubeconfig\nserver: https://%s\n' "$ep" > "$KA_ROOT/etc/kubernetes/kubelet.conf"
    kubelet_config
    # A control plane's join writes its static pods first (join.go: control-plane-prepare, before kubelet-start).
    if grep -q '^controlPlane:' "$cfg"; then printf 'apiVersion: v1 # test admin kubeconfig\nserver: https://%s\n' "$ep" > "$KA_ROOT/etc/kubernetes/admin.conf"
      mkdir -p "$KA_ROOT/etc/kubernetes/manifests"; echo "image: registry.k8s.io/kube-apiserver:v$VERSION" > "$KA_ROOT/etc/kubernetes/manifests/kube-apiserver.yaml"
      register node; cp_join; else register worker; fi ;;
  upgrade)
    case "$2" in
      plan) echo "Upgrade to the latest version in the v\${VERSION%.*} series: kubeadm upgrade apply $3 (offline: the version is given)" ;;
      # Like kubeadm, it cannot upgrade the cluster past its own version.
      apply) [ "$3" = "v$VERSION" ] || { echo "the specified version to upgrade to "$3" is higher than the kubeadm version "v$VERSION"" >&2; exit 1; }
        b="$KA_ROOT/etc/kubernetes/tmp/kubeadm-backup-manifests-$(date +%Y-%m-%d-%H-%M-%S)"; mkdir -p "$b"
        cp -r "$KA_ROOT/etc/kubernetes/manifests/." "$b/"
        echo "image: registry.k8s.io/kube-apiserver:$3" > "$KA_ROOT/etc/kubernetes/manifests/kube-apiserver.yaml"
        [ -z "\${KA_CLUSTER:-}" ] || echo "upgrade apply $3" >> "$KA_CLUSTER/events" ;;
    esac ;;
  # certs renew all (cmd/kubeadm/app/cmd/certs.go): every leaf certificate of the PKI and every
  # kubeconfig's embedded client certificate signed again by its CA for a year, with its own key;
  # the CAs untouched. Like kubeadm, it needs the CAs' keys.
  certs) [ "\${2:-} \${3:-}" = "renew all" ] || exit 0
    pki="$KA_ROOT/etc/kubernetes/pki"
    resign() { openssl x509 -x509toreq -in "$1" -signkey "$2" 2>/dev/null | openssl x509 -req -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 365 -out "$1.new" 2>/dev/null && mv "$1.new" "$1"; }
    for c in "$pki"/*.crt "$pki"/etcd/*.crt; do
      [ -f "$c" ] || continue
      case "$c" in */ca.crt|*/front-proxy-ca.crt) continue ;; */etcd/*) ca="$pki/etcd/ca" ;; */front-proxy-client.crt) ca="$pki/front-proxy-ca" ;; *) ca="$pki/ca" ;; esac
      resign "$c" "\${c%.crt}.key" "$ca" || { echo "failed to renew $c" >&2; exit 1; }
    done
    for f in admin.conf super-admin.conf controller-manager.conf scheduler.conf; do
      kc="$KA_ROOT/etc/kubernetes/$f"; [ -f "$kc" ] || continue
      cert=$(sed -n 's/^ *client-certificate-data: //p' "$kc"); [ -n "$cert" ] || continue
      t=$(mktemp -d); echo "$cert" | base64 -d > "$t/c.crt"; sed -n 's/^ *client-key-data: //p' "$kc" | base64 -d > "$t/c.key"
      resign "$t/c.crt" "$t/c.key" "$pki/ca" || exit 1
      sed -i "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 "$t/c.crt")|" "$kc"; rm -rf "$t"
    done ;;
  reset) rm -rf "$KA_ROOT/etc/kubernetes" "$KA_ROOT/var/lib/kubelet" "$state" ;;
  token) echo "fresh1.0123456789abcdef" ;;
  config)
    case "$2" in
      # What kubeadm prints offline (manifests/kubeadm-images.yaml); a test names other images in $KA_KUBEADM_IMAGES.
      # -o json as kubeadm prints it (cmd/kubeadm/app/apis/output/v1alpha3: kind Images, images: [...]).
      images) v=$5; list=$(if [ -n "\${KA_KUBEADM_IMAGES:-}" ]; then printf '%s\\n' $KA_KUBEADM_IMAGES; else
        for n in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "registry.k8s.io/$n:$v"; done
        case "$v" in $IMAGE_TABLE
          *) printf 'registry.k8s.io/coredns/coredns:v1.11.1\\nregistry.k8s.io/pause:3.9\\nregistry.k8s.io/etcd:3.5.12-0\\n' ;;
        esac; fi)
        case " $* " in
          *" -o json "*) printf '{"kind":"Images","apiVersion":"output.kubeadm.k8s.io/v1alpha3","images":[%s]}\\n' "$(printf '%s\\n' $list | sed 's/.*/"&"/' | paste -sd, -)" ;;
          *) printf '%s\\n' $list ;;
        esac ;;
      validate) grep -qE '^kind: (Init|Join)Configuration$' "$4" || { echo "no InitConfiguration or JoinConfiguration in $4" >&2; exit 1; } ;;
    esac ;;
esac`,
  // crictl ps as the kubelet's static pods make it (pkg/kubelet/config/file.go): a control-plane
  // container runs while its manifest is in /etc/kubernetes/manifests, and stops once it is gone.
  // A pod a test runs for real (test/support/static-pods.ts: etcd) runs while its process does.
  crictl: `[ "\${1:-}" = --runtime-endpoint ] && shift 2
if [ "\${1:-}" = ps ]; then name=""; prev=""; for a in "$@"; do [ "$prev" = --name ] && name=$(printf '%s' "$a" | tr -d '^$'); prev="$a"; done
  if [ -n "$name" ] && [ -e "$KA_ROOT/.pods/$name.managed" ]; then [ -e "$KA_ROOT/.pods/$name.running" ] && echo "$name-0123456789ab"
  else [ -n "$name" ] && [ -f "$KA_ROOT/etc/kubernetes/manifests/$name.yaml" ] && echo "$name-0123456789ab"; fi; fi`,
  kubectl: `[ -n "\${KA_RECORD:-}" ] || exit 0
mkdir -p "$KA_RECORD.d"; n=$(ls "$KA_RECORD.d" | wc -l)
# apply -f: the Deployments of the file exist from then on ($KA_ROOT/.cluster/deployments/NAMESPACE.NAME), each
# with one ready replica: the API server creates them, and the scheduler places their pods on a node that
# admits them (the test's node is untainted or a worker joined; a pull is never needed: the images are present).
applied() { mkdir -p "$KA_ROOT/.cluster/deployments"
  awk 'function emit() { if (kind == "Deployment" && name != "") print (ns == "" ? "default" : ns) "." name }
    /^---/ { emit(); kind = ""; name = ""; ns = ""; meta = 0; next } /^kind: / { kind = $2 } /^metadata:/ { meta = 1; next }
    /^[^ #]/ { meta = 0 } meta && /^  name: / { name = $2 } meta && /^  namespace: / { ns = $2 } END { emit() }' "$1" |
    while read -r d; do touch "$KA_ROOT/.cluster/deployments/$d"; done; }
prev=""; for a in "$@"; do [ "$prev" = "-f" ] && cp "$a" "$KA_RECORD.d/$n-kubectl-apply.yaml" && touch "$KA_ROOT/.calico-applied" && applied "$a"; prev="$a"; done
# With $KA_CLUSTER: the nodes kubeadm registered there, each with the version its kubelet
# runs, Ready while it is active, and cordoned while drained; the API server's version.
if [ -n "\${KA_CLUSTER:-}" ]; then
  # annotate [--overwrite] node [--] NAME KEY=VALUE: kept in $KA_CLUSTER/annotations/NAME, and in
  # the cluster's $KA_CLUSTER/events beside kubeadm upgrade apply. A kubelet's own credentials
  # may modify only its own Node object (plugin/pkg/admission/noderestriction/admission.go).
  case " $* " in *" annotate "*)
    pos=""; kc=""; prev=""; dash=""
    for a in "$@"; do
      if [ -n "$dash" ]; then pos="$pos $a"
      elif [ "$prev" = --kubeconfig ]; then kc=$a
      else case "$a" in --) dash=1 ;; annotate|-*) ;; *) pos="$pos $a" ;; esac; fi; prev=$a
    done
    set -- $pos; name=$2; kv=$3
    [ "$1" = node ] && [ -n "$kv" ] || { echo "error: the test's kubectl annotates one node with one KEY=VALUE" >&2; exit 1; }
    [ -e "$KA_CLUSTER/nodes/$name" ] || { echo "Error from server (NotFound): nodes "$name" not found" >&2; exit 1; }
    read -r root role < "$KA_CLUSTER/nodes/$name"
    case "$kc" in *kubelet.conf) [ "$root" = "$KA_ROOT" ] || { echo "Error from server (Forbidden): nodes "$name" is forbidden: a node may only modify its own Node object" >&2; exit 1; } ;; esac
    mkdir -p "$KA_CLUSTER/annotations"; f="$KA_CLUSTER/annotations/$name"
    { grep -v "^\${kv%%=*}=" "$f" 2>/dev/null; echo "$kv"; } > "$f.new"; mv "$f.new" "$f"
    echo "annotate $name $kv" >> "$KA_CLUSTER/events"; exit 0 ;;
  esac
  # etcdctl in a master's etcd pod (kubectl exec etcd-NAME -- etcdctl ...): one member per
  # control-plane node, named as the node (kubeadm's etcd --name), its ID from the name; member
  # remove takes the hex ID, as etcdctl member list -w simple prints it (etcdctl/ctlv3/command/printer_simple.go).
  case " $* " in *" exec "*" etcdctl "*)
    mid() { printf '%x' "$(printf '%s' "$1" | cksum | cut -d' ' -f1)"; }
    case " $* " in
      *" member list "*) for f in "$KA_CLUSTER"/nodes/*; do read -r root role < "$f"; name=$(basename "$f")
          [ "$role" = control-plane ] && [ ! -e "$KA_CLUSTER/etcd-removed/$name" ] && echo "$(mid "$name"), started, $name, https://$name:2380, https://$name:2379, false"; done; exit 0 ;;
      *" member remove "*) for a in "$@"; do id=$a; done;
        for f in "$KA_CLUSTER"/nodes/*; do name=$(basename "$f"); if [ "$(mid "$name")" = "$id" ]; then
          mkdir -p "$KA_CLUSTER/etcd-removed"; touch "$KA_CLUSTER/etcd-removed/$name"; echo "etcd member remove $name" >> "$KA_CLUSTER/events"
          echo "Member $id removed from cluster"; exit 0; fi; done
        echo "Error: etcdserver: member not found" >&2; exit 1 ;;
    esac ;;
  esac
  # delete node NAME: the Node object gone (its kubelet would register it again until reset).
  case " $* " in *" delete node "*) for a in "$@"; do name=$a; done;
    [ -e "$KA_CLUSTER/nodes/$name" ] || { echo "Error from server (NotFound): nodes "$name" not found" >&2; exit 1; }
    rm -f "$KA_CLUSTER/nodes/$name"; echo "delete node $name" >> "$KA_CLUSTER/events"; echo "node "$name" deleted"; exit 0 ;;
  esac
  # drain, cordon and uncordon take node names, or every node a label selector matches, and
  # end everything after -- as names (kubectl's cobra flags, staging/src/k8s.io/kubectl/pkg/cmd/drain/drain.go).
  verb=""; names=""; sel=""; rest=""
  for a in "$@"; do
    if [ -n "$rest" ]; then names="$names $a"; continue; fi
    if [ -z "$verb" ]; then case "$a" in drain|cordon|uncordon) verb=$a ;; esac; continue; fi
    case "$a" in --) rest=1 ;; --selector=*) sel=\${a#--selector=} ;; -*) ;; *) names="$names $a" ;; esac
  done
  if [ -n "$sel" ]; then
    for f in "$KA_CLUSTER"/nodes/*; do read -r root role < "$f"
      [ "$sel" = "node-role.kubernetes.io/$role" ] && names="$names $(basename "$f")"; done
  fi
  for name in $names; do
    [ -e "$KA_CLUSTER/nodes/$name" ] || { echo "Error from server (NotFound): nodes "$name" not found" >&2; exit 1; }
    case "$verb" in
      # A pod a PodDisruptionBudget keeps ($KA_DRAIN_BLOCKED names the node): cordoned, not drained, as kubectl leaves it after --timeout.
      drain) mkdir -p "$KA_CLUSTER/cordoned" "$KA_CLUSTER/drained"; touch "$KA_CLUSTER/cordoned/$name"
        if [ "\${KA_DRAIN_BLOCKED:-}" = "$name" ]; then
          echo "evicting pod default/web-$name" >&2
          echo "error when evicting pods/"web-$name" -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget." >&2
          echo "error: unable to drain node "$name" due to error: [error when waiting for pod "web-$name" in namespace "default" to terminate: global timeout reached: 20s], continuing command..." >&2
          exit 1
        fi
        touch "$KA_CLUSTER/drained/$name" ;;
      cordon) mkdir -p "$KA_CLUSTER/cordoned"; touch "$KA_CLUSTER/cordoned/$name" ;;
      uncordon) rm -f "$KA_CLUSTER/cordoned/$name" "$KA_CLUSTER/drained/$name" ;;
    esac
  done
  case "$*" in
    # The API server runs the version its static pod manifest on the first master names.
    *" version -o json"*) printf '{"serverVersion":{"gitVersion":"%s"}}\\n' "$(sed -n 's/.*kube-apiserver://p' "$(cat "$KA_CLUSTER/first-master")/etc/kubernetes/manifests/kube-apiserver.yaml")"; exit 0 ;;
    # The pods bound to a node: its calico-node (a DaemonSet's, which drain leaves), and until it is drained a web pod.
    *" get pods -A --field-selector spec.nodeName="*)
      for a in "$@"; do case "$a" in spec.nodeName=*) name=\${a#spec.nodeName=} ;; esac; done
      printf '{"items":[{"metadata":{"name":"calico-node-%s","namespace":"kube-system","ownerReferences":[{"kind":"DaemonSet"}]},"status":{"phase":"Running"}}' "$name"
      [ -e "$KA_CLUSTER/drained/$name" ] || printf ',{"metadata":{"name":"web-%s","namespace":"default","ownerReferences":[{"kind":"ReplicaSet"}]},"status":{"phase":"Running"}}' "$name"
      printf ']}\\n'; exit 0 ;;
    # Every node that joined, as the real API lists them (not only the master).
    *"get nodes -o jsonpath={.items[*].metadata.name}"*) ls "$KA_CLUSTER/nodes" | tr '\n' ' '; exit 0 ;;
    *"get nodes -o json"*) sep=""; printf '{"items":['
      for f in "$KA_CLUSTER"/nodes/*; do
        name=$(basename "$f"); read -r root role < "$f"
        v=$(sed 's/^Kubernetes //' "$root/.systemctl/running.kubelet" 2>/dev/null); ready=False; [ -e "$root/.systemctl/active.kubelet" ] && ready=True
        cordoned=false; [ -e "$KA_CLUSTER/cordoned/$name" ] && cordoned=true
        labels='{}'; [ "$role" = control-plane ] && labels='{"node-role.kubernetes.io/control-plane":""}'
        annotations={$(sed 's/^\\([^=]*\\)=\\(.*\\)$/"\\1":"\\2"/' "$KA_CLUSTER/annotations/$name" 2>/dev/null | paste -sd, -)}
        printf '%s{"metadata":{"name":"%s","labels":%s,"annotations":%s},"spec":{"unschedulable":%s},"status":{"nodeInfo":{"kubeletVersion":"%s"},"conditions":[{"type":"Ready","status":"%s"}]}}' "$sep" "$name" "$labels" "$annotations" "$cordoned" "$v" "$ready"; sep=,
      done; printf ']}\\n'; exit 0 ;;
  esac
fi
# What kubeadm init left in the API server (the kubeadm stand-in's $KA_ROOT/.cluster).
state="$KA_ROOT/.cluster"
case "$*" in
  *"get --raw /readyz --request-timeout"*) [ -e "$state/api" ] || { echo "The connection to the server was refused" >&2; exit 1; }; echo ok; exit 0 ;;
  *"get configmap kubeadm-config"*) [ -e "$state/upload-config" ] || { echo 'Error from server (NotFound): configmaps "kubeadm-config" not found' >&2; exit 1; }; exit 0 ;;
  *"get configmap cluster-info"*) [ -e "$state/bootstrap-token" ] || { echo 'Error from server (NotFound): configmaps "cluster-info" not found' >&2; exit 1; }; exit 0 ;;
  *"get daemonset kube-proxy"*|*"get deployment coredns"*) [ -e "$state/addon" ] || { echo 'Error from server (NotFound): not found' >&2; exit 1; }; exit 0 ;;
  *"get nodes -l node-role.kubernetes.io/control-plane -o name"*)
    if [ -n "\${KA_CLUSTER:-}" ]; then for f in "$KA_CLUSTER"/nodes/*; do read -r root role < "$f"; [ "$role" = control-plane ] && echo "node/$(basename "$f")"; done
    else sed 's|^|node/|' "$state/mark-control-plane" 2>/dev/null; fi; exit 0 ;;
esac
case "$*" in
  *"get --raw /readyz/etcd"*) echo ok ;;
  *"get daemonset calico-node"*) [ -e "$KA_ROOT/.calico-applied" ] || exit 1 ;;
  *" get deployment "*)
    ns=default; prev=""; name=""; for a in "$@"; do [ "$prev" = -n ] && ns=$a; [ "$prev" = deployment ] && name=$a; prev=$a; done
    [ -e "$KA_ROOT/.cluster/deployments/$ns.$name" ] || { echo "Error from server (NotFound): deployments.apps "$name" not found" >&2; exit 1; }
    case " $* " in *"readyReplicas"*) printf 1 ;; esac ;;
  # The first master as mark-control-plane left it: tainted NoSchedule unless its kubeadm config gives taints: [] (kubeadm's nil default).
  *"get nodes -o json"*) name=$(cat "$state/mark-control-plane" 2>/dev/null) || { echo '{"items":[]}'; exit 0; }
    taints='[{"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"}]'
    grep -q '^  taints: []' "$KA_ROOT/etc/kube-airgap/kubeadm.yaml" 2>/dev/null && taints='[]'
    printf '{"items":[{"metadata":{"name":"%s"},"spec":{"taints":%s},"status":{"conditions":[{"type":"Ready","status":"True"}]}}]}\n' "$name" "$taints" ;;
  *"get nodes -o jsonpath={.items[*].metadata.name}"*) printf 'k8s01' ;;
  *"get configmap coredns"*) if [ -e "$KA_ROOT/.coredns-local" ]; then printf '.:53 {\\n    errors\\n    cache 30\\n}\\n'; else printf '.:53 {\\n    errors\\n    forward . /etc/resolv.conf {\\n       max_concurrent 1000\\n    }\\n    cache 30\\n}\\n'; fi ;;
  *"rollout restart deployment coredns"*) touch "$KA_ROOT/.coredns-local" ;;
  *"get nodes"*) printf True ;;
  *"get pods"*) echo "calico-node-abcde   1/1   Running   0   1m"; echo "etcd-k8s01   1/1   Running   0   1m" ;;
esac`,
}

/**
 * etcdutl 3.5 (etcdutl/etcdutl/snapshot_command.go) restores a snapshot with the flags etcdctl
 * 3.4's snapshot restore takes; Debian's etcd is 3.4, which has no etcdutl, so the stand-in
 * hands a restore on to the real etcdctl beside it.
 */
const ETCDUTL = `#!/bin/sh
# kube-airgap test stand-in for etcdutl: Debian's etcd 3.4 has none; its etcdctl restores.
echo "etcdutl $*" >> "\${KA_RECORD:-/dev/null}"
[ "$1 \${2:-}" = "snapshot restore" ] || { echo "etcdutl (test stand-in): only snapshot restore" >&2; exit 2; }
shift 2
exec "$(dirname "$0")/etcdctl" snapshot restore "$@"
`

/** kubelet answers --version, before it records; $KA_BROKEN_KUBELET (a version) makes that version fail to start. */
const KUBELET = `[ "\${KA_BROKEN_KUBELET:-}" = "v$VERSION" ] && { echo "kubelet v$VERSION: failed to start (a test's broken kubelet)" >&2; exit 1; }
[ "\${1:-}" = --version ] && { echo "Kubernetes v$VERSION"; exit 0; }
`

export async function makeArtifacts(
  dir: string,
  realistic: boolean,
  /** Versions the stand-in kubeadm knows beyond the committed table (what a newer kubeadm would print). */
  kubeadmRows: Record<string, Record<string, string>> = {},
): Promise<(w: Want) => Promise<Buffer | undefined>> {
  await mkdir(dir, { recursive: true })
  const made = new Map<string, Buffer>()
  const sh = (cmd: string, cwd = dir) => execFileSync('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'ignore', 'inherit'] })

  // The images each kubeadm version wants, as kubeadm would print them (case branches for the stand-in).
  const table = yaml.load(await readFile(join(REPO, 'manifests', 'kubeadm-images.yaml'), 'utf8')) as Record<string, Record<string, string>>
  const imageTable = Object.entries({ ...table, ...kubeadmRows })
    .map(([v, i]) => `v${v}) printf 'registry.k8s.io/coredns/coredns:${i.coredns}\\nregistry.k8s.io/pause:${i.pause}\\nregistry.k8s.io/etcd:${i.etcd}\\n' ;;`)
    .join('\n          ')
  const recorder = (name: string, version: string) =>
    Buffer.from(
      `#!/bin/sh\n# kube-airgap test stand-in for ${name} ${version}: the real one cannot run here. It records its arguments.\nVERSION=${version}\n${name === 'kubelet' ? KUBELET : ''}echo "${name} $*" >> "\${KA_RECORD:-/dev/null}"\n${(EMULATE[name] ?? '').replace('$IMAGE_TABLE', imageTable)}\nexit 0\n`,
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
    } else if (realistic && w.name === 'etcd') {
      // etcd's release tarball, with Debian's real etcd and etcdctl (3.4: the snapshot format
      // and the v3 API backups use are the same in 3.5) and a stand-in etcdutl, which Debian lacks.
      const top = base.replace(/\.tar\.gz$/, '')
      out = await tarball(
        base,
        {
          [`${top}/etcd`]: '/usr/bin/etcd',
          [`${top}/etcdctl`]: '/usr/bin/etcdctl',
          [`${top}/etcdutl`]: Buffer.from(ETCDUTL),
          [`${top}/README.md`]: Buffer.from('# etcd\n'),
        },
        'gzip -1',
      )
    } else if (realistic && w.name === 'crictl') {
      out = await tarball(base, { crictl: recorder('crictl', w.version) }, 'gzip -1')
    } else if (realistic && ['kubeadm', 'kubelet', 'kubectl', 'calicoctl'].includes(w.name)) {
      out = recorder(w.name, w.version)
    }
    if (out) made.set(key, out)
    return out
  }
}
