import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { EnvironmentConfig } from './config';

/** The CloudWatch namespace the ADOT sidecar writes the node's metrics to. */
export const metricsNamespace = 'Reservations';

/**
 * The AWS Distro for OpenTelemetry collector's configuration: it scrapes the
 * node's Prometheus /metrics on localhost every 15 s and writes them as
 * CloudWatch embedded metric format (EMF) log events, from which CloudWatch
 * extracts metrics named exactly like the Prometheus ones (counters as the
 * increase per scrape, gauges as they are, histograms as a statistic set:
 * Sum, SampleCount, Min, Max). Only the metrics the dashboard and alarms use
 * are declared, so the others cost log bytes but no custom metrics.
 */
export function collectorConfig(c: EnvironmentConfig, logGroupName: string): string {
  const perEnvironment = [
    'rsv_holds_created_total',
    'rsv_bookings_confirmed_total',
    'rsv_bookings_cancelled_total',
    'rsv_cluster_owned_partitions',
    'rsv_cluster_rebalances_total',
    'rsv_forwarded_requests_total',
    'rsv_forward_seconds',
    'rsv_store_fenced_batches_total',
    'rsv_store_commit_seconds',
    'rsv_requests_shed_total',
    'rsv_sections_failed',
  ];
  const perUnit = ['rsv_relay_lag'];
  const selectors = (names: string[]) => names.map((n) => `'^${n}$'`).join(', ');
  return `receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: reservations
          scrape_interval: 15s
          metrics_path: /metrics
          static_configs:
            - targets: ['127.0.0.1:8080']
              labels:
                Environment: ${c.name}
processors:
  batch/metrics:
    timeout: 30s
exporters:
  awsemf:
    namespace: ${metricsNamespace}
    log_group_name: ${logGroupName}
    log_stream_name: '{TaskId}'
    dimension_rollup_option: NoDimensionRollup
    metric_declarations:
      - dimensions: [[Environment]]
        metric_name_selectors: [${selectors(perEnvironment)}]
      - dimensions: [[Environment, unit]]
        metric_name_selectors: [${selectors(perUnit)}]
service:
  pipelines:
    metrics:
      receivers: [prometheus]
      processors: [batch/metrics]
      exporters: [awsemf]
`;
}

export interface ObservabilityProps {
  readonly config: EnvironmentConfig;
  readonly service: ecs.FargateService;
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  readonly database: rds.DatabaseCluster;
}

/**
 * The dashboard and the alarms of one environment, and the SNS topic the
 * alarms notify (subscribe on-call to it; `alarmEmail` does for one address).
 */
export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const c = props.config;
    const minute = Duration.minutes(1);
    const node = (metricName: string, statistic: string, label: string, extra: Record<string, string> = {}) =>
      new cloudwatch.Metric({
        namespace: metricsNamespace,
        metricName,
        dimensionsMap: { Environment: c.name, ...extra },
        statistic,
        period: minute,
        label,
      });
    const perSecond = (metricName: string, label: string) =>
      new cloudwatch.MathExpression({
        expression: `${metricName} / 60`,
        usingMetrics: { [metricName]: node(metricName, 'Sum', metricName) },
        period: minute,
        label,
      });
    const tg = props.targetGroup.metrics;
    const alb = props.loadBalancer.metrics;
    const requests = tg.requestCount({ period: minute, statistic: 'Sum' });
    const target5xx = tg.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period: minute, statistic: 'Sum' });
    const elb5xx = alb.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: minute, statistic: 'Sum' });
    const errorRate = new cloudwatch.MathExpression({
      expression: 'IF(requests > 0, 100 * (target5xx + elb5xx) / requests, 0)',
      usingMetrics: { requests, target5xx, elb5xx },
      period: minute,
      label: '5xx, % of requests',
    });
    const p95 = tg.targetResponseTime({ period: minute, statistic: 'p95' });
    const p99 = tg.targetResponseTime({ period: minute, statistic: 'p99' });
    const cpu = props.service.metricCpuUtilization({ period: minute, statistic: 'Average' });
    const dbConnections = props.database.metricDatabaseConnections({ period: minute, statistic: 'Maximum' });
    const relayLagSeconds = node('rsv_relay_lag', 'Maximum', 'relay lag (s), worst task', { unit: 'seconds' });

    this.topic = new sns.Topic(this, 'Alarms', { displayName: `reservations ${c.name} alarms` });
    if (c.alarmEmail) this.topic.addSubscription(new subscriptions.EmailSubscription(c.alarmEmail));

    const alarm = (id: string, metric: cloudwatch.IMetric, threshold: number, periods: number, description: string) => {
      const a = new cloudwatch.Alarm(this, id, {
        alarmName: `rsv-${c.name}-${id}`,
        alarmDescription: description,
        metric,
        threshold,
        evaluationPeriods: periods,
        datapointsToAlarm: periods,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(new actions.SnsAction(this.topic));
      a.addOkAction(new actions.SnsAction(this.topic));
      this.alarms.push(a);
      return a;
    };
    // Max fleet x (writers + migration/recovery connections), plus room for
    // an operator's psql: more means a leak or an unknown client.
    const dbConnectionsMax = c.maxTasks * (c.pgWriters + 2) + 10;
    alarm('CpuHigh', cpu, c.alarmCpuPercent, 3,
      `service CPU above ${c.alarmCpuPercent} % for 3 minutes: autoscaling is behind or at its maximum`);
    alarm('ErrorRate', errorRate, c.alarmErrorRatePercent, 3,
      `more than ${c.alarmErrorRatePercent} % of requests answered 5xx for 3 minutes`);
    alarm('LatencyP95', p95, c.alarmP95LatencySeconds, 5,
      `p95 of the target response time above ${c.alarmP95LatencySeconds} s for 5 minutes`);
    alarm('DatabaseConnections', dbConnections, dbConnectionsMax, 3,
      `more than ${dbConnectionsMax} database connections: more than the service at its maximum size opens`);
    alarm('UnhealthyTargets', tg.unhealthyHostCount({ period: minute, statistic: 'Maximum' }), 0, 3,
      'a target has failed /ready for 3 minutes');
    alarm('RelayLag', relayLagSeconds, c.alarmRelayLagSeconds, 5,
      `the oldest change not yet in Kafka is older than ${c.alarmRelayLagSeconds} s: MSK unreachable?`);

    const graph = (title: string, left: cloudwatch.IMetric[], width = 8) =>
      new cloudwatch.GraphWidget({ title, left, width, height: 6 });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `rsv-${c.name}`,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 3 }),
    );
    this.dashboard.addWidgets(
      graph('Holds/s', [perSecond('rsv_holds_created_total', 'holds/s')]),
      graph('Bookings/s', [
        perSecond('rsv_bookings_confirmed_total', 'bookings/s'),
        perSecond('rsv_bookings_cancelled_total', 'cancellations/s'),
      ]),
      new cloudwatch.GraphWidget({
        title: 'Latency (ALB target response time)',
        left: [p99, p95],
        leftAnnotations: [{ value: c.alarmP95LatencySeconds, label: 'p95 alarm' }],
        width: 8,
        height: 6,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: '5xx',
        left: [target5xx, elb5xx],
        right: [errorRate],
        width: 8,
        height: 6,
      }),
      graph('Cluster: rebalances and owned partitions', [
        node('rsv_cluster_rebalances_total', 'Sum', 'rebalances'),
        node('rsv_cluster_owned_partitions', 'Minimum', 'owned partitions, fewest on a task'),
        node('rsv_cluster_owned_partitions', 'Maximum', 'owned partitions, most on a task'),
      ]),
      graph('Forwarded requests', [
        perSecond('rsv_forwarded_requests_total', 'forwarded/s'),
        node('rsv_forward_seconds', 'Average', 'forward time (s), average'),
      ]),
    );
    this.dashboard.addWidgets(
      graph('Fenced batches', [node('rsv_store_fenced_batches_total', 'Sum', 'fenced batches')]),
      graph('Kafka relay lag', [
        relayLagSeconds,
        node('rsv_relay_lag', 'Maximum', 'relay lag (rows), worst task', { unit: 'rows' }),
      ]),
      graph('Store commit time', [
        node('rsv_store_commit_seconds', 'Average', 'commit (s), average'),
        node('rsv_store_commit_seconds', 'Maximum', 'commit (s), max'),
      ]),
    );
    this.dashboard.addWidgets(
      graph('Service CPU and memory', [cpu, props.service.metricMemoryUtilization({ period: minute })]),
      graph('Aurora', [
        dbConnections,
        props.database.metric('ServerlessDatabaseCapacity', { period: minute, statistic: 'Maximum' }),
      ]),
      graph('Requests and tasks', [
        requests,
        tg.healthyHostCount({ period: minute, statistic: 'Minimum' }),
        node('rsv_requests_shed_total', 'Sum', 'shed (503, queue full)'),
      ]),
    );
  }
}
