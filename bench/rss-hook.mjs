// Loaded with `node --import` by the benchmarks: reports the process's peak RSS at exit.
import { writeFileSync } from 'node:fs'
process.on('exit', () => {
  if (process.env.KA_RSS_FILE) writeFileSync(process.env.KA_RSS_FILE, String(process.resourceUsage().maxRSS * 1024))
})
