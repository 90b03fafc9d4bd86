import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export const METRICS_NAMESPACE = 'Echoes/Storage';
export const DEFAULT_REJECTED_UPLOADS_PER_5_MIN = 50;

/** Every table operation the functions call, so a throttle on any of them alarms. */
export const TABLE_OPERATIONS = [
  dynamodb.Operation.GET_ITEM,
  dynamodb.Operation.PUT_ITEM,
  dynamodb.Operation.UPDATE_ITEM,
  dynamodb.Operation.DELETE_ITEM,
  dynamodb.Operation.QUERY,
  dynamodb.Operation.SCAN,
  dynamodb.Operation.BATCH_GET_ITEM,
];

export interface AlarmsProps {
  readonly environment: string;
  readonly httpApi: apigw.HttpApi;
  readonly api: lambda.IFunction;
  readonly events: lambda.IFunction;
  readonly cleanup: lambda.IFunction;
  readonly queue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly exportWorker: lambda.IFunction;
  readonly exportsQueue: sqs.IQueue;
  readonly exportsDeadLetterQueue: sqs.IQueue;
  readonly table: dynamodb.Table;
  readonly alarmEmail?: string;
  readonly rejectedUploadsPer5Min?: number;
}

const FIVE_MINUTES = Duration.minutes(5);

/** Metrics Insights over the EMF metrics: they carry dimensions, so a plain Metric would match none. */
function insights(
  label: string,
  select: string,
  opts: { groupBy?: string; period?: Duration } = {},
): cw.MathExpression {
  const groupBy = opts.groupBy ? ` GROUP BY ${opts.groupBy}` : '';
  return new cw.MathExpression({
    expression: `SELECT ${select} FROM "${METRICS_NAMESPACE}"${groupBy}`,
    usingMetrics: {},
    period: opts.period ?? FIVE_MINUTES,
    label,
  });
}

/** Alarms to one SNS topic, and one dashboard on the contract's metric names. */
export class EchoesAlarms extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: Record<
    | 'api5xxRate'
    | 'apiLatencyP99'
    | 'rejectedUploads'
    | 'deadLetters'
    | 'exportDeadLetters'
    | 'cleanupFailures'
    | 'integrityIncidents'
    | 'tableThrottles',
    cw.Alarm
  >;
  readonly dashboard: cw.Dashboard;

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: `echoes-storage ${props.environment} alarms`,
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
    });
    if (props.alarmEmail)
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    const action = new SnsAction(this.topic);
    const alarm = (
      name: string,
      p: Omit<cw.AlarmProps, 'treatMissingData' | 'actionsEnabled'>,
    ): cw.Alarm => {
      const a = new cw.Alarm(this, name, {
        ...p,
        treatMissingData: cw.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(action);
      a.addOkAction(action);
      return a;
    };
    const gt = cw.ComparisonOperator.GREATER_THAN_THRESHOLD;
    const api = props.httpApi;

    const errorRate = new cw.MathExpression({
      // no requests is not an error rate of 100 % (nor a division by zero)
      expression: 'IF(requests > 0, errors / requests * 100, 0)',
      usingMetrics: {
        errors: api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' }),
        requests: api.metricCount({ period: FIVE_MINUTES, statistic: 'Sum' }),
      },
      period: FIVE_MINUTES,
      label: 'API 5xx %',
    });
    const rejected = insights('uploads rejected', 'SUM(echoes_uploads_rejected_total)');
    const dlqDepth = props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
      period: FIVE_MINUTES,
      statistic: 'Maximum',
    });
    const throttles = props.table.metricThrottledRequestsForOperations({
      operations: TABLE_OPERATIONS,
      period: FIVE_MINUTES,
    });
    this.alarms = {
      api5xxRate: alarm('Api5xxRate', {
        alarmDescription:
          'More than 1 % of API requests answered 5xx for 10 minutes: see the API log group.',
        metric: errorRate,
        threshold: 1,
        comparisonOperator: gt,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
      }),
      apiLatencyP99: alarm('ApiLatencyP99', {
        alarmDescription: 'API p99 latency above 3 s for 15 minutes.',
        metric: api.metricLatency({ period: FIVE_MINUTES, statistic: 'p99' }),
        threshold: 3000,
        comparisonOperator: gt,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
      }),
      rejectedUploads: alarm('RejectedUploads', {
        alarmDescription:
          'Many uploads rejected in 5 minutes: see echoes_uploads_rejected_total by reason on the dashboard.',
        metric: rejected,
        threshold: props.rejectedUploadsPer5Min ?? DEFAULT_REJECTED_UPLOADS_PER_5_MIN,
        comparisonOperator: gt,
        evaluationPeriods: 1,
      }),
      deadLetters: alarm('EventsDeadLetters', {
        alarmDescription:
          'S3 events failed 5 times and wait in the dead-letter queue: fix the cause, then redrive them.',
        metric: dlqDepth,
        threshold: 0,
        comparisonOperator: gt,
        evaluationPeriods: 1,
      }),
      exportDeadLetters: alarm('ExportDeadLetters', {
        alarmDescription:
          'Export jobs failed 3 times and wait in the exports dead-letter queue: see the export worker log group, fix the cause, then redrive them.',
        metric: props.exportsDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: FIVE_MINUTES,
          statistic: 'Maximum',
        }),
        threshold: 0,
        comparisonOperator: gt,
        evaluationPeriods: 1,
      }),
      cleanupFailures: alarm('CleanupFailures', {
        alarmDescription: 'The hourly orphan cleanup failed: see the cleanup log group.',
        metric: props.cleanup.metricErrors({ period: Duration.hours(1), statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
      }),
      integrityIncidents: alarm('IntegrityIncidents', {
        alarmDescription:
          'The audio of a ready echo was deleted outside echoes-storage: find the key in the events log group ("integrity incident"), then restore the object or delete the echo.',
        metric: insights('integrity incidents', 'SUM(echoes_integrity_incidents_total)'),
        threshold: 0,
        comparisonOperator: gt,
        evaluationPeriods: 1,
      }),
      tableThrottles: alarm('TableThrottles', {
        alarmDescription: 'DynamoDB throttled requests on the echoes table.',
        metric: throttles,
        threshold: 0,
        comparisonOperator: gt,
        evaluationPeriods: 1,
      }),
    };

    const fns = [
      ['API', props.api],
      ['events', props.events],
      ['cleanup', props.cleanup],
      ['export worker', props.exportWorker],
    ] as const;
    const graph = (title: string, left: cw.IMetric[], right: cw.IMetric[] = []): cw.GraphWidget =>
      new cw.GraphWidget({ title, left, right, width: 8 });
    this.dashboard = new cw.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(24),
      widgets: [
        [
          graph('Upload URLs issued, uploads verified', [
            insights('issued', 'SUM(echoes_upload_urls_issued_total)'),
            insights('verified', 'SUM(echoes_uploads_verified_total)'),
          ]),
          graph('Uploads rejected by reason', [
            insights('rejected', 'SUM(echoes_uploads_rejected_total)', { groupBy: 'reason' }),
          ]),
          graph('Upload bytes (sum, max)', [
            insights('bytes', 'SUM(echoes_upload_bytes)'),
            insights('largest', 'MAX(echoes_upload_bytes)'),
          ]),
        ],
        [
          graph('Upload seconds (URL issued to verified)', [
            new cw.Metric({
              namespace: METRICS_NAMESPACE,
              metricName: 'echoes_upload_seconds',
              statistic: 'p50',
              period: FIVE_MINUTES,
              label: 'p50',
            }),
            new cw.Metric({
              namespace: METRICS_NAMESPACE,
              metricName: 'echoes_upload_seconds',
              statistic: 'p99',
              period: FIVE_MINUTES,
              label: 'p99',
            }),
          ]),
          graph('Echoes deleted', [
            new cw.Metric({
              namespace: METRICS_NAMESPACE,
              metricName: 'echoes_deleted_total',
              statistic: 'Sum',
              period: FIVE_MINUTES,
            }),
          ]),
          graph(
            'Cleanup: objects deleted and runs',
            [
              insights('objects', 'SUM(echoes_cleanup_objects_deleted_total)', {
                groupBy: 'sweep',
                period: Duration.hours(1),
              }),
            ],
            [
              insights('runs', 'SUM(echoes_cleanup_runs_total)', {
                groupBy: 'sweep, outcome',
                period: Duration.hours(1),
              }),
            ],
          ),
        ],
        [
          graph(
            'API requests and 5xx',
            [
              api.metricCount({ period: FIVE_MINUTES, statistic: 'Sum' }),
              api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' }),
            ],
            [errorRate],
          ),
          graph('API latency', [
            api.metricLatency({ period: FIVE_MINUTES, statistic: 'p50', label: 'p50' }),
            api.metricLatency({ period: FIVE_MINUTES, statistic: 'p99', label: 'p99' }),
          ]),
          graph('Queues and dead letters', [
            props.queue.metricApproximateNumberOfMessagesVisible({
              period: FIVE_MINUTES,
              statistic: 'Maximum',
              label: 'queue',
            }),
            props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
              period: FIVE_MINUTES,
              statistic: 'Maximum',
              label: 'dead letters',
            }),
            props.exportsQueue.metricApproximateNumberOfMessagesVisible({
              period: FIVE_MINUTES,
              statistic: 'Maximum',
              label: 'exports',
            }),
            props.exportsDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
              period: FIVE_MINUTES,
              statistic: 'Maximum',
              label: 'export dead letters',
            }),
          ]),
        ],
        [
          graph(
            'Function errors',
            fns.map(([n, f]) =>
              f.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum', label: n }),
            ),
          ),
          graph(
            'Function duration p99',
            fns.map(([n, f]) =>
              f.metricDuration({ period: FIVE_MINUTES, statistic: 'p99', label: n }),
            ),
          ),
          graph('DynamoDB throttles', [throttles]),
        ],
      ],
    });
  }
}
