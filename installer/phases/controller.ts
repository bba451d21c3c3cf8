import { KaError } from '../../bundle/errors.js'
import type { Phase } from '../plan.js'
import { packagesHere } from '../os-packages.js'
import { installStep } from './packages.js'

/**
 * The machine that runs the fleet playbook (`./install controller`): the bundle's packages
 * for it (ansible-core, sshpass) for its release, installed the way a node's are, from the
 * same signed and pinned set, with no network source.
 */
export const controller: Phase = {
  name: 'controller',
  summary:
    "installs what the fleet playbook's controller needs (ansible-core, sshpass) from the bundle's packages for its release, with dpkg or rpm and no network source",
  async plan(ctx) {
    const { release, mine, carried } = packagesHere(ctx, 'controller')
    if (!carried.length)
      throw new KaError(
        'EUSAGE',
        "this bundle carries no packages for the playbook's controller: build one whose manifest names them under packages.controller (docs/fleet.md), or install ansible-core on this machine another way",
      )
    if (!mine.length)
      throw new KaError(
        'EUSAGE',
        `this machine runs ${release ?? 'an unknown release (no /etc/os-release)'}; the bundle carries the controller's packages for ${carried.join(', ')}: run the playbook from a machine of one of those, or use a bundle whose manifest lists ${release ?? 'this release'} under packages.controller.releases`,
      )
    return [await installStep(ctx, `the controller's packages for ${release}`, mine)]
  },
}
