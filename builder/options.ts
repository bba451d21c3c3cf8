import type { Cache } from './download/cache.js'
import type { DockerCredentials } from './images/credentials.js'
import type { HttpOptions, Mirror } from './download/http.js'
import type { Progress } from './progress.js'
import type { RegistryMirror } from './images/registry.js'

/** How `bundle lock` and `bundle build` reach the internet, and where what they fetch goes. */
export interface FetchOptions {
  cache: Cache
  http: HttpOptions
  mirrors: readonly Mirror[]
  /** The mirrors file they came from (--mirrors, $KUBE_AIRGAP_MIRRORS), for the advice when a host does not answer. */
  mirrorsFile?: string
  registryMirrors: readonly RegistryMirror[]
  credentials: DockerCredentials
  concurrency: number
  progress: Progress
}
