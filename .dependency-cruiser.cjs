// The layer rules of docs/design.md ("Layers"), checked by test/dependency-rules.test.ts on
// the TypeScript sources, so type-only imports count as much as value imports.
//
// Bottom to top; a module may import its own layer and the layers below it, never above.
// Cycles are refused everywhere, type-only ones included.
const LAYERS = [
  { name: 'errors', path: '^src/errors\\.ts$' },
  { name: 'util', path: '^src/(util|types)/' },
  { name: 'log', path: '^src/log/' },
  { name: 'crypto', path: '^src/crypto/' },
  { name: 'masterkey', path: '^src/masterkey/' },
  { name: 'keys', path: '^src/keys/' },
  { name: 'env', path: '^src/env/' },
  { name: 'engine', path: '^src/engine/' },
  { name: 'lifecycle', path: '^src/lifecycle/' },
  { name: 'metrics', path: '^src/metrics/' },
  { name: 'server', path: '^src/server/' },
  { name: 'config', path: '^src/config/' },
  { name: 'level', path: '^src/level/' },
  { name: 'backup', path: '^src/backup/' },
  { name: 'entry', path: '^src/(cli/|index\\.ts$)' },
];

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.name}-imports-upward`,
  comment: `${layer.name} may import only ${LAYERS.slice(0, i + 1).map((l) => l.name).join(', ')} (docs/design.md, "Layers")`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: LAYERS.slice(i + 1).map((l) => l.path) },
}));

/** node:fs and node:fs/promises, as the checker names them. */
const FS = '^(node:)?fs(/promises)?$';
/** The modules that may use node:fs (see the rule files-only-through-env). */
const FS_MODULES = [
  '^src/util/file-io\\.ts$', // the I/O layer under the env (and its fault injection for tests)
  '^src/env/',
  '^src/keys/',
  '^src/masterkey/', // master key files and tokens: key material, not user data
  '^src/cli/',
  '^src/config/toml-config\\.ts$', // reads the config file
  '^src/server/tls-material\\.ts$', // reads the TLS certificate and key
  '^src/util/package-version\\.ts$', // reads package.json
];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle, type-only imports included: break it by moving the shared type down a layer',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...upward,
    {
      name: 'level-and-server-are-apart',
      comment: 'the embedding (level) and the server are two ways to run the engine: neither imports the other',
      severity: 'error',
      from: { path: '^src/level/' },
      to: { path: '^src/server/' },
    },
    {
      name: 'library-does-not-import-cli',
      comment: 'src/index.ts is the library; the CLI is an application of it',
      severity: 'error',
      from: { path: '^src/index\\.ts$' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'module-outside-every-layer',
      comment: 'every module under src/ belongs to a layer: add a new folder to LAYERS here and to docs/design.md',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.map((l) => l.path) },
      to: {},
    },
    {
      name: 'files-only-through-env',
      comment:
        'user data reaches disk only through the encrypted env (src/env/, over util/file-io.ts): node:fs is for the env, the key layers, the CLI, and modules that read files holding no user data (the config, TLS material, package.json); a new one must be added here with its reason',
      severity: 'error',
      from: { path: '^src/', pathNot: FS_MODULES },
      to: { path: FS },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import the checker cannot resolve would hide an edge',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // swc reads TypeScript here: dependency-cruiser's `typescript` parser needs typescript < 7,
    // and the JavaScript fallback drops `export type … from` edges.
    parser: 'swc',
    tsPreCompilationDeps: true,
    // node:fs too, so that files-only-through-env sees who imports it.
    includeOnly: ['^src/', FS],
    doNotFollow: { path: 'node_modules' },
    enhancedResolveOptions: { extensions: ['.ts', '.d.ts', '.js'] },
  },
};
