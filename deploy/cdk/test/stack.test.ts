// Assertions on the synthesized templates (node's built-in test runner and
// aws-cdk-lib/assertions): every item of issue 17's infrastructure list.
// Run by CTest (label deploy) or `npm test` in deploy/cdk.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { checkShutdownTimings, dev, EnvironmentConfig, prod } from '../lib/config';
import { collectorConfig } from '../lib/observability';
import { ReservationsStack } from '../lib/reservations-stack';

function synth(config: EnvironmentConfig): Template {
  const app = new App();
  const stack = new ReservationsStack(app, `rsv-${config.name}`, { config, env: { region: config.region } });
  return Template.fromStack(stack);
}

const devTemplate = synth(dev);
const prodTemplate = synth(prod);

type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string[] };
function resources(t: Template, type: string): [string, Resource][] {
  return Object.entries(t.findResources(type)) as [string, Resource][];
}
function only(t: Template, type: string): [string, Resource] {
  const found = resources(t, type);
  assert.equal(found.length, 1, `exactly one ${type}`);
  return found[0];
}
type Container = {
  Name: string;
  Command?: string[];
  Environment?: { Name: string; Value: unknown }[];
  Secrets?: { Name: string; ValueFrom: unknown }[];
  StopTimeout?: number;
  HealthCheck?: { Command: string[] };
  LogConfiguration?: { LogDriver: string };
};
function containers(t: Template): Container[] {
  return resources(t, 'AWS::ECS::TaskDefinition').flatMap(([, r]) => r.Properties.ContainerDefinitions as Container[]);
}
function container(t: Template, name: string): Container {
  const found = containers(t).filter((c) => c.Name === name);
  assert.equal(found.length, 1, `one container named ${name}`);
  return found[0];
}
function environment(c: Container): Record<string, unknown> {
  return Object.fromEntries((c.Environment ?? []).map((e) => [e.Name, e.Value]));
}
function secretNames(c: Container): string[] {
  return (c.Secrets ?? []).map((s) => s.Name).sort();
}
const nodeOf = (t: Template) => container(t, 'node');

describe('network', () => {
  it('spreads public, app and data subnets over 3 AZs', () => {
    const subnets = resources(devTemplate, 'AWS::EC2::Subnet');
    assert.equal(subnets.length, 9);
    const zones = new Set(subnets.map(([, s]) => s.Properties.AvailabilityZone));
    assert.deepEqual([...zones].sort(), ['us-east-1a', 'us-east-1b', 'us-east-1c']);
    const isPublic = subnets.filter(([, s]) => s.Properties.MapPublicIpOnLaunch === true);
    assert.equal(isPublic.length, 3, 'only the 3 public subnets map public IPs');
  });
  it('has one NAT gateway in dev, one per AZ in prod', () => {
    devTemplate.resourceCountIs('AWS::EC2::NatGateway', 1);
    prodTemplate.resourceCountIs('AWS::EC2::NatGateway', 3);
  });
});

describe('service', () => {
  it('runs N Fargate tasks (3 in dev) in private subnets with circuit breaker and rollback', () => {
    const [, service] = only(devTemplate, 'AWS::ECS::Service');
    assert.equal(service.Properties.DesiredCount, 3);
    assert.equal(service.Properties.LaunchType, 'FARGATE');
    assert.deepEqual(service.Properties.DeploymentConfiguration.DeploymentCircuitBreaker, {
      Enable: true,
      Rollback: true,
    });
    assert.equal(service.Properties.DeploymentConfiguration.MinimumHealthyPercent, 100);
    assert.equal(service.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp, 'DISABLED');
    assert.equal(service.Properties.NetworkConfiguration.AwsvpcConfiguration.Subnets.length, 3);
    assert.equal(only(prodTemplate, 'AWS::ECS::Service')[1].Properties.DesiredCount, prod.desiredTasks);
  });
  it('checks /ready from the ALB and runs `reservations healthcheck` in the container', () => {
    devTemplate.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/ready',
      Port: 8080,
      Matcher: { HttpCode: '200' },
      HealthCheckIntervalSeconds: dev.healthCheckIntervalSeconds,
      UnhealthyThresholdCount: dev.unhealthyThreshold,
    });
    assert.deepEqual(nodeOf(devTemplate).HealthCheck?.Command, [
      'CMD', 'reservations', 'healthcheck', '--url', 'http://127.0.0.1:8080/ready',
    ]);
  });
  it('matches stopTimeout and the deregistration delay to the node shutdown flags', () => {
    const node = nodeOf(devTemplate);
    const env = environment(node);
    const stopTimeout = node.StopTimeout!;
    const shutdownTimeout = Number(env.RSV_SHUTDOWN_TIMEOUT_SECONDS);
    const shutdownDelayMs = Number(env.RSV_SHUTDOWN_DELAY_MS);
    assert.equal(stopTimeout, 30);
    assert.equal(shutdownTimeout, 25);
    assert.equal(shutdownDelayMs, 10_000);
    assert.ok(shutdownTimeout + 5 <= stopTimeout, 'the node ends by itself before SIGKILL');
    assert.ok(stopTimeout <= 120, 'Fargate maximum');
    assert.ok(shutdownDelayMs >= dev.healthCheckIntervalSeconds * dev.unhealthyThreshold * 1000,
      'serves until the ALB health check has noticed');
    assert.ok(shutdownDelayMs + Number(env.RSV_REQUEST_TIMEOUT_MS) + 5000 <= shutdownTimeout * 1000);
    const [, group] = only(devTemplate, 'AWS::ElasticLoadBalancingV2::TargetGroup');
    const delay = group.Properties.TargetGroupAttributes.find(
      (a: { Key: string }) => a.Key === 'deregistration_delay.timeout_seconds');
    assert.equal(delay.Value, '20');
    assert.ok(Number(delay.Value) <= shutdownTimeout);
    assert.ok(Number(delay.Value) * 1000 >= 2 * Number(env.RSV_REQUEST_TIMEOUT_MS));
  });
  it('does not cap the ALB per address', () => {
    const env = environment(nodeOf(devTemplate));
    assert.equal(env.RSV_CONNECTIONS_PER_ADDRESS_MAX, '0');
  });
  it('refuses inconsistent shutdown timings', () => {
    assert.throws(() => checkShutdownTimings({ ...dev, stopTimeoutSeconds: 26 }), /stopTimeout/);
    assert.throws(() => checkShutdownTimings({ ...dev, shutdownDelayMs: 2000 }), /health check/);
    assert.throws(() => checkShutdownTimings({ ...dev, stopTimeoutSeconds: 150, shutdownTimeoutSeconds: 140 }), /120/);
    assert.throws(() => checkShutdownTimings({ ...dev, availabilityZones: ['a', 'b'] }), /3 availability zones/);
  });
  it('autoscales between the bounds on CPU and on requests per target', () => {
    devTemplate.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: dev.minTasks,
      MaxCapacity: dev.maxTasks,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    prodTemplate.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: prod.minTasks,
      MaxCapacity: prod.maxTasks,
    });
    devTemplate.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
        TargetValue: dev.cpuTargetPercent,
      }),
    });
    devTemplate.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: Match.objectLike({ PredefinedMetricType: 'ALBRequestCountPerTarget' }),
        TargetValue: dev.requestsPerTaskPerMinute,
      }),
    });
  });
  it('configures the node only through RSV_* and libpq variables, clustered, with JSON logs', () => {
    const node = nodeOf(devTemplate);
    const env = environment(node);
    for (const name of Object.keys(env)) assert.match(name, /^(RSV_|PG)/, `${name} is not a node setting`);
    assert.equal(env.RSV_LOG_FORMAT, 'json');
    assert.equal(env.RSV_STORE, 'postgres');
    assert.equal(env.RSV_LISTEN, '0.0.0.0:8080');
    assert.equal(env.RSV_CLUSTER, 'true');
    assert.equal(env.RSV_CLUSTER_PARTITIONS, '64');
    assert.equal(env.RSV_CLUSTER_GROUP, 'rsv-owners');
    assert.equal(env.RSV_CLUSTER_TOPIC, 'rsv-owners');
    assert.equal(env.RSV_CLUSTER_SESSION_TIMEOUT_MS, '10000');
    assert.equal(env.RSV_CLUSTER_HEARTBEAT_MS, '3000');
    assert.ok(!('RSV_ADVERTISE' in env), 'the entrypoint sets RSV_ADVERTISE from the task metadata');
    assert.ok(env.RSV_KAFKA_BROKERS, 'brokers from GetBootstrapBrokers');
    assert.equal(env.RSV_RATE_LIMIT_CUSTOMER, String(dev.rateLimitCustomer));
    // Behind the ALB, per-address limits need the client's address.
    assert.ok(env.RSV_TRUSTED_PROXIES, 'the VPC is the trusted proxies');
    assert.equal(node.LogConfiguration?.LogDriver, 'awslogs');
  });
});

describe('secrets', () => {
  it('injects every credential as an ECS secret', () => {
    assert.deepEqual(secretNames(nodeOf(devTemplate)), [
      'PGPASSWORD', 'PGUSER', 'RSV_ADMIN_TOKEN', 'RSV_KAFKA_SASL_PASSWORD', 'RSV_KAFKA_SASL_USERNAME', 'RSV_TOKEN_SECRET',
    ]);
    assert.deepEqual(secretNames(container(devTemplate, 'migrate')), ['PGPASSWORD', 'PGUSER']);
    assert.deepEqual(secretNames(container(devTemplate, 'topics')), ['KAFKA_PASSWORD', 'KAFKA_USER']);
  });
  it('puts no credential in plain environment text of any container', () => {
    for (const c of containers(devTemplate)) {
      for (const e of c.Environment ?? []) {
        assert.doesNotMatch(e.Name, /PASSWORD|TOKEN|SECRET|PGUSER/, `${c.Name}: ${e.Name} in plain env`);
        const text = JSON.stringify(e.Value);
        assert.doesNotMatch(text, /resolve:secretsmanager|SecretString/, `${c.Name}: ${e.Name} resolves a secret`);
        assert.doesNotMatch(text, /redis:\/\/[^@]*@/, `${c.Name}: ${e.Name} has credentials in a URL`);
      }
    }
  });
  it('keeps the secrets in Secrets Manager, the MSK one under AmazonMSK_ with a customer key', () => {
    devTemplate.resourceCountIs('AWS::SecretsManager::Secret', 4);
    devTemplate.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: 'AmazonMSK_rsv-dev-nodes',
      KmsKeyId: Match.anyValue(),
    });
  });
});

describe('data stores', () => {
  it('runs Aurora PostgreSQL Serverless v2 with a writer and a reader', () => {
    devTemplate.hasResourceProperties('AWS::RDS::DBCluster', {
      Engine: 'aurora-postgresql',
      StorageEncrypted: true,
      ServerlessV2ScalingConfiguration: { MinCapacity: dev.auroraMinAcu, MaxCapacity: dev.auroraMaxAcu },
    });
    const instances = resources(devTemplate, 'AWS::RDS::DBInstance').map(([, r]) => r.Properties);
    assert.equal(instances.length, 2);
    assert.ok(instances.every((i) => i.DBInstanceClass === 'db.serverless'));
    assert.deepEqual(instances.map((i) => i.PromotionTier).sort(), [0, 1], 'a writer (tier 0) and a reader');
    prodTemplate.hasResourceProperties('AWS::RDS::DBCluster', { DeletionProtection: true });
  });
  it('runs MSK with SASL/SCRAM over TLS only (no IAM, no unauthenticated access)', () => {
    devTemplate.hasResourceProperties('AWS::MSK::Cluster', {
      NumberOfBrokerNodes: 3,
      ClientAuthentication: {
        Sasl: { Scram: { Enabled: true }, Iam: { Enabled: false } },
        Unauthenticated: { Enabled: false },
      },
      EncryptionInfo: { EncryptionInTransit: { ClientBroker: 'TLS', InCluster: true } },
    });
    devTemplate.resourceCountIs('AWS::MSK::BatchScramSecret', 1);
    const [, brokers] = only(devTemplate, 'Custom::AWS');
    assert.match(JSON.stringify(brokers.Properties), /GetBootstrapBrokers/);
  });
  it('runs Redis in the VPC without TLS in transit, encrypted at rest, reachable from the nodes only', () => {
    devTemplate.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      Engine: 'redis',
      TransitEncryptionEnabled: false,
      AtRestEncryptionEnabled: true,
      NumCacheClusters: 2,
      AutomaticFailoverEnabled: true,
    });
    const ingress = resources(devTemplate, 'AWS::EC2::SecurityGroupIngress')
      .map(([, r]) => r.Properties)
      .filter((p) => p.FromPort === 6379);
    assert.equal(ingress.length, 1);
    assert.match(JSON.stringify(ingress[0].SourceSecurityGroupId), /NodesSecurityGroup/);
    const env = environment(nodeOf(devTemplate));
    assert.match(JSON.stringify(env.RSV_REDIS_URL), /redis:\/\//);
  });
});

describe('one-off tasks', () => {
  it('migrates with `reservations migrate` before the service updates', () => {
    assert.deepEqual(container(devTemplate, 'migrate').Command, ['migrate']);
    const runs = resources(devTemplate, 'Custom::RunTaskToCompletion');
    assert.equal(runs.length, 2);
    const [migrateId] = runs.find(([, r]) => r.Properties.Container === 'migrate')!;
    const [topicsId] = runs.find(([, r]) => r.Properties.Container === 'topics')!;
    const [, service] = only(devTemplate, 'AWS::ECS::Service');
    assert.ok(service.DependsOn?.includes(migrateId), 'the service waits for the migration');
    assert.ok(service.DependsOn?.includes(topicsId), 'the service waits for the topics');
    const [, migrate] = runs.find(([, r]) => r.Properties.Container === 'migrate')!;
    assert.match(JSON.stringify(migrate.Properties.TaskDefinition), /MigrateTask/);
  });
  it('creates the events topic and the owners topic (one partition per cluster partition)', () => {
    const script = container(devTemplate, 'topics').Command!.join('\n');
    assert.match(script, /--create --if-not-exists --topic reservation-events --partitions 12 --replication-factor 3/);
    assert.match(script, /--create --if-not-exists --topic rsv-owners --partitions 64 --replication-factor 3/);
    assert.match(script, /SCRAM-SHA-512/);
  });
});

describe('observability', () => {
  const alarms = resources(devTemplate, 'AWS::CloudWatch::Alarm').map(([, r]) => r.Properties);
  const byName = (suffix: string) => {
    const found = alarms.find((a) => a.AlarmName === `rsv-dev-${suffix}`);
    assert.ok(found, `alarm ${suffix}`);
    return found;
  };
  it('alarms on CPU > 80 %, error rate > 1 %, p95 latency and database connections', () => {
    assert.equal(byName('CpuHigh').Threshold, 80);
    assert.equal(byName('CpuHigh').MetricName, 'CPUUtilization');
    const errors = byName('ErrorRate');
    assert.equal(errors.Threshold, 1);
    assert.match(JSON.stringify(errors.Metrics), /100 \* \(target5xx \+ elb5xx\) \/ requests/);
    assert.equal(byName('LatencyP95').ExtendedStatistic, 'p95');
    assert.equal(byName('LatencyP95').Threshold, dev.alarmP95LatencySeconds);
    assert.equal(byName('DatabaseConnections').MetricName, 'DatabaseConnections');
    assert.equal(byName('DatabaseConnections').Threshold, dev.maxTasks * (dev.pgWriters + 2) + 10);
    for (const a of alarms) {
      assert.equal(a.ComparisonOperator, 'GreaterThanThreshold');
      assert.match(JSON.stringify(a.AlarmActions), /ObservabilityAlarms/, `${a.AlarmName} notifies the SNS topic`);
    }
    devTemplate.resourceCountIs('AWS::SNS::Topic', 1);
  });
  it('has a dashboard with every required metric, named as the collector emits them', () => {
    const [, dashboard] = only(devTemplate, 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    const config = collectorConfig(dev, '/rsv/dev/metrics');
    for (const metric of [
      'rsv_holds_created_total', 'rsv_bookings_confirmed_total', 'rsv_cluster_rebalances_total',
      'rsv_cluster_owned_partitions', 'rsv_forwarded_requests_total', 'rsv_forward_seconds',
      'rsv_store_fenced_batches_total', 'rsv_relay_lag', 'rsv_store_commit_seconds',
    ]) {
      assert.ok(body.includes(metric), `dashboard shows ${metric}`);
      assert.ok(config.includes(`'^${metric}$'`), `the collector declares ${metric}`);
    }
    for (const metric of ['TargetResponseTime', 'HTTPCode_Target_5XX_Count', 'p99'])
      assert.ok(body.includes(metric), `dashboard shows ${metric}`);
  });
  it('runs the ADOT collector as a sidecar that scrapes /metrics into EMF', () => {
    const collector = container(devTemplate, 'metrics');
    const config = String(environment(collector).AOT_CONFIG_CONTENT);
    assert.match(config, /targets: \['127\.0\.0\.1:8080'\]/);
    assert.match(config, /awsemf:/);
    assert.match(config, /namespace: Reservations/);
  });
});
