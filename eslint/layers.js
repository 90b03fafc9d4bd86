// The dependency direction of src/, as a lint rule: see docs/architecture.md ("Layers").
// Each import (static, re-export or dynamic) of a project file is resolved to its path under
// src/ and both ends are put in a layer; the rules below say which layer may import which.
import { dirname, join, relative, sep } from 'node:path';

const SRC = join(dirname(new URL(import.meta.url).pathname), '..', 'src');

/** Adapters: each wraps one SDK or one medium. A path prefix names one adapter. */
const ADAPTERS = [
  'storage/local/',
  'storage/s3/',
  'storage/legacy/',
  // playback URLs (cloudfront-signer) and invalidations (client-cloudfront): one CDN, one adapter
  'storage/cloudfront-',
  'metadata/sqlite/',
  'metadata/dynamodb/',
  'audio/ffmpeg/',
  'audio/header-probe.ts',
  'metrics/prometheus.ts',
  'metrics/emf.ts',
  'auth/secrets-manager.ts',
  'queue/sqs.ts',
];
/** The ports, and the pure modules that belong with them (shared by a port's adapters or its callers). */
const PORT_MODULES = [
  'storage/port.ts',
  'metadata/port.ts',
  'metadata/record-codec.ts',
  'audio/port.ts',
  'audio/sniffer.ts',
  'metrics/port.ts',
  'queue/port.ts',
];
/**
 * The library's public entry points re-export adapters for code that embeds echoes-storage.
 * `cli/setup` creates the DynamoDB table the DynamoDB adapter defines, so it reads that definition.
 */
const MAY_REACH_ADAPTERS = ['entry/index.ts', 'entry/aws.ts'];
const CLI_SETUP_READS = ['metadata/dynamodb/table.ts'];

function layerOf(path) {
  const adapter = ADAPTERS.find((a) => path === a || path.startsWith(a));
  if (adapter) return { layer: 'adapter', adapter };
  if (PORT_MODULES.includes(path)) return { layer: 'port' };
  return { layer: path.split('/')[0].replace(/\.ts$/, '') };
}

function problem(from, toPath) {
  const f = layerOf(from);
  const t = layerOf(toPath);
  if (f.layer === 'domain' && t.layer !== 'domain')
    return 'the domain imports nothing of the project outside src/domain';
  if (f.layer === 'port' && !['domain', 'port'].includes(t.layer))
    return 'a port imports only the domain and other ports';
  if (f.layer === 'services' && !['domain', 'port', 'services', 'support'].includes(t.layer)) {
    return 'services import only the domain, the ports, src/support and other services';
  }
  if (f.layer === 'adapter' && t.layer === 'adapter' && t.adapter !== f.adapter) {
    return `an adapter (${f.adapter}) never imports another adapter (${t.adapter})`;
  }
  if (f.layer === 'adapter' && ['app', 'http', 'cli', 'entry', 'services'].includes(t.layer)) {
    return 'an adapter imports only the domain, the ports, src/support and its own folder';
  }
  if (
    ['http', 'cli', 'entry'].includes(f.layer) &&
    t.layer === 'adapter' &&
    !MAY_REACH_ADAPTERS.includes(from) &&
    !(from.startsWith('cli/setup/') && CLI_SETUP_READS.includes(toPath))
  ) {
    return `${f.layer} reaches adapters only through src/app/compose.ts`;
  }
  if (f.layer === 'client' && !['client', 'domain', 'wire'].includes(t.layer))
    return 'the browser client imports only client, domain and wire (it ships to browsers)';
  return undefined;
}

const direction = {
  meta: {
    type: 'problem',
    docs: { description: 'Keep the dependency direction of src/ (docs/architecture.md)' },
    schema: [],
  },
  create(context) {
    const file = relative(SRC, context.filename).split(sep).join('/');
    if (file.startsWith('..')) return {};
    function check(node) {
      const spec = node.source?.value;
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const target = relative(SRC, join(dirname(context.filename), spec))
        .split(sep)
        .join('/');
      if (target.startsWith('..')) return;
      const why = problem(file, target.replace(/\.js$/, '.ts'));
      if (why) context.report({ node: node.source, message: `${spec}: ${why}.` });
    }
    return {
      ImportDeclaration: check,
      ExportNamedDeclaration: check,
      ExportAllDeclaration: check,
      ImportExpression: check,
    };
  },
};

export default { rules: { direction } };
