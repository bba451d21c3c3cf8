import { benchBuild } from './build.bench.js'
import { benchImages } from './images.bench.js'
import { benchInstall } from './install.bench.js'
import { benchLink } from './link.bench.js'

/** `npm run bench`: every benchmark, in one process of measurement, printed as ratios. */
const which = process.argv.slice(2)
const all: [string, () => Promise<string[]>][] = [
  ['build', benchBuild],
  ['link', benchLink],
  ['images', benchImages],
  ['install', benchInstall],
]
for (const [name, run] of all) {
  if (which.length && !which.includes(name)) continue
  for (const line of await run()) console.log(line)
}
