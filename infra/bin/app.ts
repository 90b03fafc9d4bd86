import { App } from 'aws-cdk-lib';
import { propsFromContext } from '../lib/context.ts';
import { EchoesStorageStack } from '../lib/echoes-storage-stack.ts';

const app = new App();
const props = propsFromContext((key) => app.node.tryGetContext(key));
new EchoesStorageStack(app, `EchoesStorage-${props.environment}`, {
  ...props,
  description: `echoes-storage ${props.environment}: audio and log buckets, echoes table, API, events, cleanup, alarms${props.cdn ? ', CDN' : ''}`,
});
