import type { Io } from '../../bundle/report.js'
import type { Flags } from '../context.js'
import { controller } from '../phases/controller.js'
import { phaseCommand } from './install.js'

/** `./install controller`: verify, then the packages the fleet playbook's controller needs. */
export const controllerCommand = (flags: Flags, io: Io): Promise<void> =>
  phaseCommand(
    'controller',
    flags,
    io,
    { phases: [controller.name], log: 'controller' },
    () => [controller],
    'next: write the inventory and run the playbook from this folder:\n  ./install inventory > ~/inventory.yml   # then edit it\n  ansible-playbook -i ~/inventory.yml ansible/site.yml -e kube_airgap_bundle=/media/usb/NAME.tar --check\n',
  )
