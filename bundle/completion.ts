/**
 * The completion script, made from a command line's own definition. The shape below is
 * commander's as far as it is read here: the format knows no command-line library.
 */
export interface CommandShape {
  name(): string
  readonly commands: readonly CommandShape[]
  readonly options: readonly {
    hidden?: boolean
    long?: string | undefined
    short?: string | undefined
    required?: boolean
    optional?: boolean
    argChoices?: readonly string[] | undefined
  }[]
}

/** Values to offer for an option that takes one, beyond commander's own `.choices()`: `--role` → master, worker. */
export type OptionValues = Record<string, readonly string[]>

interface Shape {
  name: string
  /** Options that take no value, and those that take one (with the values to offer; none: file names). */
  flags: string[]
  valued: Map<string, readonly string[] | undefined>
}

function shape(cmd: CommandShape, values: OptionValues): Shape {
  const flags = ['--help']
  const valued = new Map<string, readonly string[] | undefined>()
  for (const o of cmd.options) {
    if (o.hidden) continue
    const names = [o.long, o.short].filter((n): n is string => !!n)
    for (const n of names) {
      if (o.required || o.optional) valued.set(n, o.argChoices ?? (o.long ? values[o.long] : undefined))
      else flags.push(n)
    }
  }
  return { name: cmd.name(), flags, valued }
}

const words = (list: Iterable<string>) => [...list].join(' ')

export const SHELLS = ['bash', 'zsh'] as const
export type Shell = (typeof SHELLS)[number]

/** What `completion` says of itself, the same on both sides. */
export const completionHelp = (invokedAs: string) => ({
  description: `print a shell completion script for ${invokedAs}`,
  examples: `\nExamples:\n  ${invokedAs} completion bash >> ~/.bashrc     # from the next shell on\n  source <(${invokedAs} completion bash)        # in this shell now`,
})

/**
 * A bash completion script made from the command line's own definition (commands, options,
 * their choices), so it never falls behind it. zsh runs it through bashcompinit. Values for
 * an option without a list complete as file names.
 */
export function completionScript(shell: Shell, program: CommandShape, invokedAs: string, values: OptionValues = {}): string {
  const fn = `_kube_airgap_${program.name().replace(/\W/g, '_')}`
  const top = shape(program, values)
  const subs = program.commands.map((c) => shape(c, values))
  const all = [top, ...subs]
  const key = (s: Shape) => (s === top ? '' : s.name)
  const valueCases = all.flatMap((s) =>
    [...s.valued].map(
      ([opt, list]) =>
        `    '${key(s)}:${opt}') ${list ? `COMPREPLY=($(compgen -W '${words(list)}' -- "$cur"))` : `COMPREPLY=($(compgen -f -- "$cur"))`} ; return ;;`,
    ),
  )
  const optionCases = all.map((s) => `      '${key(s)}') COMPREPLY=($(compgen -W '${words([...s.flags, ...s.valued.keys()])}' -- "$cur")) ;;`)
  return `# ${shell} completion for ${invokedAs}, made by \`${invokedAs} completion ${shell}\`: source it from ~/.${shell}rc
${shell === 'zsh' ? 'autoload -U +X bashcompinit && bashcompinit\n' : ''}${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd= i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      ${subs.map((s) => s.name).join('|')}) cmd=\${COMP_WORDS[i]}; break ;;
    esac
  done
  case "$cmd:$prev" in
${valueCases.join('\n')}
  esac
  if [[ $cur == -* ]]; then
    case "$cmd" in
${optionCases.join('\n')}
    esac
  elif [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W '${words(subs.map((s) => s.name))}' -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F ${fn} ${invokedAs}
`
}
