import { App } from 'aws-cdk-lib';
import { ENVIRONMENTS, type EnvironmentName } from '../../src/setup/templates.ts';
import { EchoesStorageStack } from '../lib/echoes-storage-stack.ts';

const app = new App();
const environment: unknown = app.node.tryGetContext('environment') ?? 'dev';
if (!ENVIRONMENTS.includes(environment as EnvironmentName)) {
  throw new Error(`-c environment=${String(environment)}: use one of ${ENVIRONMENTS.join(', ')}.`);
}
new EchoesStorageStack(app, `EchoesStorage-${String(environment)}`, {
  environment: environment as EnvironmentName,
  description: `echoes-storage ${String(environment)}: audio bucket, access-log bucket, echoes table, API policy`,
});
