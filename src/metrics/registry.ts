import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine } from '../engine/engine.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { registerEncryptionMetrics } from './encryption-metrics.js';
import { registerEngineMetrics } from './engine-metrics.js';
import { registerLifecycleMetrics, type LifecycleMetricsSource } from './lifecycle-metrics.js';
import { registerServerMetrics, type ServerCounters } from './server-metrics.js';

export interface MetricsSources {
  env: EncryptedEnv;
  engine?: Engine;
  server?: ServerCounters;
  /** The online encryption lifecycle. */
  lifecycle?: LifecycleMetricsSource;
}

/**
 * A registry of its own (not prom-client's global one, which any dependency may fill) with
 * every tdekv metric and Node.js process metrics under the `tdekv_` prefix. Serve it with
 * `registry.metrics()` and `registry.contentType`.
 */
export function createMetricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tdekv_' });
  registerEncryptionMetrics(registry, sources.env);
  if (sources.engine) registerEngineMetrics(registry, sources.engine);
  if (sources.server) registerServerMetrics(registry, sources.server);
  if (sources.lifecycle) registerLifecycleMetrics(registry, sources.lifecycle);
  return registry;
}
