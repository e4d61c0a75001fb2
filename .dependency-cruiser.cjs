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
    includeOnly: '^src/',
    doNotFollow: { path: 'node_modules' },
    enhancedResolveOptions: { extensions: ['.ts', '.d.ts', '.js'] },
  },
};
