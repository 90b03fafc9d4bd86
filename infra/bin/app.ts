import { App } from 'aws-cdk-lib';
import { propsFromContext } from '../lib/context.ts';
import { EchoesStorageStack } from '../lib/echoes-storage-stack.ts';

const app = new App();
let props: ReturnType<typeof propsFromContext>;
try {
  props = propsFromContext((key) => app.node.tryGetContext(key));
} catch (err) {
  // A bad -c value is the operator's to fix: the message says how, a stack trace would bury it.
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
new EchoesStorageStack(app, `EchoesStorage-${props.environment}`, {
  ...props,
  description: `echoes-storage ${props.environment}: audio and log buckets, echoes table, API, events, cleanup, alarms${props.cdn ? ', CDN' : ''}`,
});
