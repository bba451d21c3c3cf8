/** kube-airgap's version, as both command lines and the bundled installer report it (package.json must agree: a unit test checks). */
export const TOOL_VERSION = '0.1.0'
