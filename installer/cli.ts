import { fileURLToPath } from 'node:url'
import { Argument, Command, Option } from 'commander'
import { KaError } from '../bundle/errors.js'
import { nearest } from '../bundle/text.js'
import { commanderOutput, processIo, reportFailure, runWhenExecuted, type Io } from '../bundle/report.js'
import { TOOL_VERSION } from '../bundle/version.js'
import { completionHelp, completionScript, SHELLS, type Shell } from '../bundle/completion.js'
import { type BackupFlags, backupCommand, restoreCommand } from './commands/backup.js'
import { certsRenewCommand } from './commands/certs.js'
import { imagesCommand } from './commands/images.js'
import { type RegistryFlags, registryCommand, registryPushCommand } from './commands/registry.js'
import { configCommand } from './commands/config.js'
import { controllerCommand } from './commands/controller.js'
import { versionCommand } from './commands/version.js'
import { doctorCommand } from './commands/doctor.js'
import { installCommand } from './commands/install.js'
import { inventoryCommand } from './commands/inventory.js'
import { joinCommand } from './commands/join-command.js'
import { phasesCommand } from './commands/phases.js'
import { removeNodeCommand } from './commands/remove-node.js'
import { resetCommand } from './commands/reset.js'
import { upgradeCommand } from './commands/upgrade.js'
import { verifyCommand } from './commands/verify.js'
import type { Flags } from './context.js'
import { BACKUP_DIR, DEFAULT_CONTAINERD_SOCKET } from './node-paths.js'
import { PHASE_CHOICES, VERIFY_SUMMARY } from './phases/index.js'

/** The bundle this installer sits in: `<bundle>/installer/install.mjs`. */
const BUNDLE_DIR = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')

/** The command line, mapped onto one command each; `setExit` takes a command's exit status. */
function program(io: Io, setExit: (code: number) => void): Command {
  // A word that is no command (a typo, or a role without --role) reaches the install itself:
  // it is named with what was meant, not commander's "Expected 0 arguments".
  const top = installOptions(new Command('install'), io)
    .usage('[options] [command]')
    .argument('[word]')
    .action(async (word: string | undefined, flags: Flags) => {
      if (word !== undefined)
        throw notACommand(
          word,
          top.commands.map((c) => c.name()),
        )
      return installCommand(flags, io)
    })
  // A subcommand's own options win over the same ones given before it.
  const flags = (own: object = {}): Flags => ({ ...top.opts<Flags>(), ...own })
  addNodeCommands(top, flags, io, setExit)
  addPrintCommands(top, flags, io)
  return top
}

function notACommand(word: string, commands: string[]): KaError {
  if (word === 'master' || word === 'worker') return new KaError('EUSAGE', `${word} is not a command: the role is a flag, --role ${word}`)
  const near = nearest(word, commands)
  return new KaError('EUSAGE', `unknown command '${word}'${near ? ` (did you mean ${near}?)` : ''}; see ./install --help`)
}

/** `./install` itself: its description, options and examples (every subcommand sees these too). */
function installOptions(top: Command, io: Io): Command {
  return top
    .description('Install Kubernetes from this kube-airgap bundle, with nothing from the network.')
    .exitOverride()
    .configureOutput(commanderOutput('install', io, './install'))
    .version(`kube-airgap ${TOOL_VERSION}`, '-V, --version', 'print the version')
    .addOption(new Option('--role <role>', 'what this node is: master or worker'))
    .option('--config <file>', 'cluster.yaml (see cluster.example.yaml in the bundle folder); flags win over it')
    .option('--join-file <file>', 'join/worker.yaml or join/control-plane.yaml from the first master')
    .option('--advertise-address <ip>', "this node's address (default: the default route's interface)")
    .option('--pod-subnet <cidr>', 'pod addresses (default 10.244.0.0/16)')
    .option('--service-subnet <cidr>', 'service addresses (default 10.96.0.0/12)')
    .option('--control-plane-endpoint <host:port>', 'where every node reaches the API: your load balancer or virtual IP (default: advertise address:6443)')
    .option(
      '--endpoint <local|vip=IP>',
      "the endpoint the bundle provides: local (HAProxy on every node's 127.0.0.1:7443 to every master; the default for several masters), or vip=IP[,interface=NAME] (keepalived on the masters)",
    )
    .option('--masters <name=ip,...>', 'the masters the endpoint serves (cluster.yaml: nodes with role: master)')
    .option('--node-name <name>', "this node's name (default: the hostname)")
    .option('--wait-timeout <seconds>', 'how long finish waits for the node to be Ready', '600')
    .option(
      '--public-key <file>',
      'the bundle must be signed by this Ed25519 public key (a guard against damage; against a hostile stick, check with kube-airgap-verify first)',
    )
    .option('--require-signature', 'refuse an unsigned bundle (a guard against damage, not against a hostile stick)')
    .option('--base <dir>', 'for a delta bundle: the unpacked old bundle it completes (default: beside this folder, by the name its DELTA.json gives)')
    .option('--no-verify', 'skip verification (development only: warns, and the record says so)')
    .option('--phases <list>', 'run only these phases (comma separated)')
    .option('--skip-phases <list>', 'run all phases but these')
    .option('--dry-run', 'print every file (path and content hash) and command; change nothing')
    .option('--root <dir>', 'put every file under DIR instead of / (host commands need --host-commands then)', '/')
    .option('--host-commands <dir>', 'under --root: run systemctl, modprobe, sysctl, swapoff (and any host command) from DIR')
    .option('--containerd-address <socket>', "containerd's socket", DEFAULT_CONTAINERD_SOCKET)
    .option('--json', 'print the result as JSON')
    .option('-v, --verbose', 'print every action, also of steps already done')
    .addOption(new Option('--bundle <dir>', 'the unpacked bundle (default: the one this installer is in)').default(BUNDLE_DIR).hideHelp())
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install --role master --config ~/cluster.yaml --dry-run   # every file and command, nothing changed\n  sudo ./install --role master --config ~/cluster.yaml\n  sudo ./install --role worker --join-file join/worker.yaml\n  sudo ./install --role master --join-file join/control-plane.yaml\n\nThe quickstart: README.txt (README.zh-CN.txt) in this folder.`,
    )
}

type FlagsOf = (own?: object) => Flags

/** The commands that read or change this node and its cluster. */
function addNodeCommands(top: Command, flags: FlagsOf, io: Io, setExit: (code: number) => void): void {
  top
    .command('verify')
    .description(`${VERIFY_SUMMARY}; writes a record to /var/log/kube-airgap/`)
    .addHelpText('after', `\nExamples:\n  ./install verify\n  ./install verify --public-key ~/kube-airgap.pub --json`)
    .option('--public-key <file>', 'the bundle must be signed by this Ed25519 public key')
    .option('--require-signature', 'refuse an unsigned bundle')
    .option('--base <dir>', 'for a delta bundle: the unpacked old bundle it completes')
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => verifyCommand(flags(own), io))
  top
    .command('join-command')
    .description('on the first master: a fresh join token and certificate key, and join/*.yaml rewritten')
    .addHelpText('after', `\nExamples:\n  sudo ./install join-command        # on the first master, then copy join/ to the next nodes`)
    .action(async () => joinCommand(flags(), io))
  top
    .command('doctor')
    .description('read-only checks of this node for every failure in the field notes; each with what was found and the fix')
    .addHelpText('after', `\nExamples:\n  sudo ./install doctor\n  sudo ./install doctor --json`)
    .option('--json', 'print the findings as JSON')
    .action(async (own: object) => setExit(await doctorCommand(flags(own), io)))
  top
    .command('upgrade')
    .description(
      "upgrade this node of a running cluster to this bundle's Kubernetes, one minor at a time, masters first (skew rules and health checked first; what it replaces backed up); --rollback puts it back",
    )
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install upgrade --stage                   # on every node first: the new images, nothing else changed\n  sudo ./install upgrade --dry-run                 # the skew check and every step, nothing changed\n  sudo ./install upgrade                           # on the first master, then each other master, one at a time\n  sudo ./install upgrade --drain-from admin.conf   # on a worker: it drains and uncordons itself with that kubeconfig\n  sudo ./install upgrade --rollback                # after a failed upgrade: the old binaries and configs back\n  sudo ./install upgrade --base /opt/kube-airgap/kube-airgap-v1.29.3-linux-amd64   # from a delta bundle`,
    )
    .option('--drain-from <kubeconfig>', 'on a worker: drain and uncordon it with this kubeconfig (otherwise drain it from a master first)')
    .option(
      '--stage',
      "on every node first: import and pin this bundle's images and mark the node, changing nothing else (the first master's upgrade waits for every node)",
    )
    .option('--rollback', 'put back what the upgrade in progress (or the last one) replaced on this node')
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => upgradeCommand(flags(own), io))
  top
    .command('reset')
    .description(
      'undo the cluster on this node (kubeadm reset, pods and containers removed, CNI state removed; images kept); --purge also removes everything the installer installed',
    )
    .addHelpText('after', `\nExamples:\n  sudo ./install reset               # asks first\n  sudo ./install reset --purge --yes`)
    .option('--purge', 'also remove every file the installer installed and restore /etc/fstab')
    .option('--yes', 'do not ask before acting')
    .action(async (own: object) => resetCommand(flags(own), io))
  top
    .command('remove-node')
    .description(
      'on a master: take a node out of the cluster (cordon, drain within --wait-timeout, its etcd member removed for a control plane, the Node deleted); then run ./install reset --purge on it',
    )
    .argument('<name>', 'the node, as kubectl get nodes names it')
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install remove-node w07 --dry-run   # every step, nothing changed\n  sudo ./install remove-node w07\n  sudo ./install remove-node m03 --wait-timeout 900`,
    )
    .option('--json', 'print the result as JSON')
    .action(async (name: string, own: object) => removeNodeCommand(name, flags(own), io))
  const certs = top
    .command('certs')
    .description("the cluster's certificates: doctor lists each one's date; renew renews them")
    .action(() => {
      throw new KaError('EUSAGE', 'say what to do with the certificates: ./install certs renew (./install doctor lists their dates)')
    })
  certs
    .command('renew')
    .description(
      'on a master: kubeadm certs renew all, the control plane restarted one pod at a time to load them, admin kubeconfigs refreshed; on a worker: the kubelet rotation checked',
    )
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install doctor                    # each certificate under 90 days, with its date\n  sudo ./install certs renew --dry-run     # every step, nothing changed\n  sudo ./install certs renew               # on each master, one at a time`,
    )
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => certsRenewCommand(flags(own), io))
  top
    .command('images')
    .description(
      "on a running node of any role: an image bundle's images (bundle build --images-only) imported into containerd's k8s.io namespace and pinned, after verifying it; nothing else changes",
    )
    .argument('<folder>', 'the unpacked image bundle (kube-airgap-verify --extract DIR NAME.tar)')
    .addHelpText(
      'after',
      `\nExamples:\n  kube-airgap-verify --extract /opt/kube-airgap kube-airgap-images-0123456789ab-linux-amd64.tar\n  sudo ./install images /opt/kube-airgap/kube-airgap-images-0123456789ab-linux-amd64 --dry-run\n  sudo ./install images /opt/kube-airgap/kube-airgap-images-0123456789ab-linux-amd64 --public-key ~/kube-airgap.pub`,
    )
    .option('--json', 'print the result as JSON')
    .action(async (folder: string, own: object) => imagesCommand(folder, flags(own), io))
  const registry = top
    .command('registry')
    .description(
      "a registry inside the air gap: on cluster.yaml's registry.node, the registry (a static pod from the bundle's registry image, TLS from a CA it makes, optional basic auth); on every node, containerd's trust of it (certs.d hosts.toml) for its name and the registries it mirrors",
    )
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install registry --config cluster.yaml --dry-run        # on the registry node first, then on every other node\n  sudo ./install registry --config cluster.yaml --ca-cert ca.crt --ca-key ca.key   # with your own CA\n  sudo ./install registry push /opt/kube-airgap/kube-airgap-images-0123456789ab-linux-amd64 --config cluster.yaml`,
    )
    .option('--ca-cert <file>', "your CA's certificate (PEM), to sign the registry's certificate instead of a CA made here")
    .option('--ca-key <file>', "your CA's private key (PEM), with --ca-cert")
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => registryCommand(flags({ ...registry.opts(), ...own }) as RegistryFlags, io))
  registry
    .command('push')
    .description("an image bundle's images (bundle build --images-only) pushed into the registry by digest and tag, after verifying it")
    .argument('<folder>', 'the unpacked image bundle')
    .addHelpText('after', `\nExamples:\n  sudo ./install registry push /opt/kube-airgap/kube-airgap-images-0123456789ab-linux-amd64 --config cluster.yaml`)
    .option('--json', 'print the result as JSON')
    .action(async (folder: string, own: object) => registryPushCommand(folder, flags(own), io))
  top
    .command('backup')
    .description(
      "on a master: one file with a consistent etcd snapshot, the PKI and kubeadm's configuration (0600, its sha256 beside it), the newest --keep kept; --schedule daily: a systemd timer that does the same",
    )
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install backup --dry-run                   # every step, nothing changed\n  sudo ./install backup                             # into ${BACKUP_DIR}, the newest 7 kept\n  sudo ./install backup --schedule daily --keep 14  # and every day from now on\n  sudo ./install backup --dir /mnt/backup           # onto a disk of its own`,
    )
    .option('--dir <dir>', 'where the backups go', BACKUP_DIR)
    .option('--keep <n>', "how many of this master's backups to keep there", '7')
    .option('--schedule <daily|off>', 'daily: a systemd timer makes one every day (with these --dir and --keep); off: the timer removed')
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => backupCommand(flags(own) as BackupFlags, io))
  top
    .command('restore')
    .description(
      "on a master: etcd brought back from a backup (the backup proved whole first; the control plane stopped, etcd's old data kept aside, the snapshot restored, all started again); with several masters, the same on each, naming them all",
    )
    .argument('<file>', 'a backup ./install backup wrote (etcd-<master>-<time>.tar.gz, its .sha256 beside it)')
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install restore /mnt/backup/etcd-m01-20270101T020000Z.tar.gz --dry-run\n  sudo ./install restore /mnt/backup/etcd-m01-20270101T020000Z.tar.gz\n  sudo ./install restore etcd-m01-20270101T020000Z.tar.gz --masters m01=192.168.1.11,m02=192.168.1.12,m03=192.168.1.13   # on each master`,
    )
    .option('--masters <name=ip,...>', "every master of the backup's etcd, when it had several (the same list and file on each)")
    .option('--json', 'print the result as JSON')
    .action(async (file: string, own: object) => restoreCommand(file, flags(own), io))
  top
    .command('controller')
    .description(
      "on the machine that will run the fleet playbook: install ansible-core (and sshpass, for --ask-pass) from this bundle's packages for its release",
    )
    .addHelpText(
      'after',
      `\nExamples:\n  sudo ./install controller --dry-run   # the packages it would install, nothing changed\n  sudo ./install controller\n  ansible-playbook --version`,
    )
    .option('--json', 'print the result as JSON')
    .action(async (own: object) => controllerCommand(flags(own), io))
}

/** The commands that only print: a starting config, an inventory, the version, the phases, completion. */
function addPrintCommands(top: Command, flags: FlagsOf, io: Io): void {
  top
    .command('config')
    .description('print a commented cluster.yaml filled with what this node shows (name, address, a pod subnet clear of its networks)')
    .addHelpText('after', '\nExamples:\n  ./install config > ~/cluster.yaml && sudo ./install --role master --config ~/cluster.yaml')
    .action(async () => configCommand(flags(), io))
  top
    .command('inventory')
    .description('print a commented example inventory for the fleet playbook (ansible/site.yml): every variable it reads')
    .addHelpText(
      'after',
      '\nExamples:\n  ./install inventory > ~/inventory.yml\n  ansible-playbook -i ~/inventory.yml ansible/site.yml -e kube_airgap_bundle=/media/usb/NAME.tar',
    )
    .action(async () => inventoryCommand(flags(), io))
  top
    .command('version')
    .description("print kube-airgap's version and this bundle's Kubernetes version and platform")
    .addHelpText('after', `\nExamples:\n  ./install version`)
    .action(async () => versionCommand(flags(), io))
  top
    .command('phases')
    .description('list the phases, in the order they run')
    .option('--json', 'print the phases as JSON')
    .addHelpText('after', `\nExamples:\n  ./install phases\n  ./install phases --json`)
    .action((own: object) => phasesCommand(flags(own), io))
  const help = completionHelp('./install')
  const values = { '--role': ['master', 'worker'], '--phases': PHASE_CHOICES, '--skip-phases': PHASE_CHOICES }
  top
    .command('completion')
    .description(help.description)
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(SHELLS))
    .addHelpText('after', help.examples)
    .action((shell: Shell) => io.out(completionScript(shell, top, './install', values)))
}

/** Runs `./install` with these arguments (argv[2] on); returns the exit status. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let code = 0
  try {
    await program(io, (c) => (code = c)).parseAsync(argv, { from: 'user' })
    return code
  } catch (e) {
    return reportFailure('install', e, argv.includes('--json'), io)
  }
}

await runWhenExecuted(import.meta.url, main)
