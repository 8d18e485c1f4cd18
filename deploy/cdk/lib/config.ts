/**
 * The sizes and settings of one environment. Every stack is built from one of
 * these; `dev` and `prod` below are the two the app synthesizes. The shutdown
 * numbers are checked against each other by `checkShutdownTimings`, so that
 * the load balancer, ECS and the node agree on how a task stops
 * (docs/operations.md, "Shutdown", "On ECS").
 */
export interface EnvironmentConfig {
  /** Short name: the stack is `rsv-<name>`, resources are named after it. */
  readonly name: string;
  /** Production settings: deletion protection, retained data, no reset. */
  readonly production: boolean;
  readonly region: string;
  /** Exactly three: the VPC, Aurora, MSK and the service span them. */
  readonly availabilityZones: string[];
  readonly vpcCidr: string;
  /** NAT gateways (1 in dev saves money; one per AZ in prod survives an AZ). */
  readonly natGateways: number;

  /** ECR repository (created by deploy/scripts/deploy) and the image tag. */
  readonly repositoryName: string;
  readonly imageTag: string;

  /** Fargate task size: vCPU units (1024 = 1 vCPU) and MiB. */
  readonly taskCpu: number;
  readonly taskMemoryMiB: number;
  readonly ioThreads: number;
  readonly actorThreads: number;
  readonly pgWriters: number;
  readonly desiredTasks: number;
  readonly minTasks: number;
  readonly maxTasks: number;
  /** Target CPU of the service's target tracking. */
  readonly cpuTargetPercent: number;
  /** Target of ALBRequestCountPerTarget: requests per task per minute. */
  readonly requestsPerTaskPerMinute: number;

  /** Write requests per window per customer and per client address,
   * shared through Redis (`--rate-limit-customer`, `--rate-limit-address`;
   * 0: off). Set them before an on-sale (docs/operations.md, "Runbook"). */
  readonly rateLimitCustomer: number;
  readonly rateLimitAddress: number;
  /** The node's request deadline (`--request-timeout-ms`). */
  readonly requestTimeoutMs: number;
  /** `--shutdown-delay-ms`: keep serving after SIGTERM this long. */
  readonly shutdownDelayMs: number;
  /** `--shutdown-timeout-seconds`: the whole drain's deadline. */
  readonly shutdownTimeoutSeconds: number;
  /** ECS stopTimeout: SIGTERM to SIGKILL (at most 120 on Fargate). */
  readonly stopTimeoutSeconds: number;
  /** Target group deregistration delay (ECS waits for it before SIGTERM). */
  readonly deregistrationDelaySeconds: number;
  /** ALB health check on /ready. */
  readonly healthCheckIntervalSeconds: number;
  readonly unhealthyThreshold: number;

  /** Clustering (`--cluster-*`; the owners topic has this many partitions). */
  readonly clusterPartitions: number;
  readonly clusterGroup: string;
  readonly clusterTopic: string;
  readonly clusterSessionTimeoutMs: number;
  readonly clusterHeartbeatMs: number;
  readonly eventsTopic: string;
  readonly eventsTopicPartitions: number;

  /** Aurora Serverless v2 capacity in ACUs (0.5 steps). */
  readonly auroraMinAcu: number;
  readonly auroraMaxAcu: number;
  readonly auroraBackupDays: number;

  /** MSK brokers (a multiple of the 3 AZs), instance type, GiB per broker. */
  readonly kafkaBrokers: number;
  readonly kafkaInstanceType: string;
  readonly kafkaVolumeGiB: number;
  readonly kafkaVersion: string;

  /** ElastiCache: node type and replicas of the one shard. */
  readonly redisNodeType: string;
  readonly redisReplicas: number;

  /** CloudWatch Logs retention in days. */
  readonly logRetentionDays: number;
  /** Alarm thresholds. */
  readonly alarmCpuPercent: number;
  readonly alarmErrorRatePercent: number;
  readonly alarmP95LatencySeconds: number;
  readonly alarmRelayLagSeconds: number;
  /** An e-mail address subscribed to the alarm topic (empty: none). */
  readonly alarmEmail: string;
  /** ACM certificate for HTTPS on the ALB (empty: HTTP on port 80 only). */
  readonly certificateArn: string;
}

const shared = {
  region: 'us-east-1',
  availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'],
  repositoryName: 'reservations',
  imageTag: 'latest',
  requestTimeoutMs: 5000,
  rateLimitCustomer: 0,
  rateLimitAddress: 0,
  // The ALB stops sending to a task whose /ready fails within 2 x 5 s, so a
  // task stopped without deregistration first (stop-task by hand, Fargate
  // maintenance) keeps serving that long after SIGTERM.
  healthCheckIntervalSeconds: 5,
  unhealthyThreshold: 2,
  shutdownDelayMs: 10_000,
  shutdownTimeoutSeconds: 25,
  stopTimeoutSeconds: 30,
  deregistrationDelaySeconds: 20,
  clusterPartitions: 64,
  clusterGroup: 'rsv-owners',
  clusterTopic: 'rsv-owners',
  clusterSessionTimeoutMs: 10_000,
  clusterHeartbeatMs: 3_000,
  eventsTopic: 'reservation-events',
  kafkaVersion: '3.6.0',
  cpuTargetPercent: 60,
  alarmCpuPercent: 80,
  alarmErrorRatePercent: 1,
  alarmP95LatencySeconds: 0.25,
  alarmRelayLagSeconds: 60,
  alarmEmail: '',
  certificateArn: '',
};

export const dev: EnvironmentConfig = {
  ...shared,
  name: 'dev',
  production: false,
  vpcCidr: '10.20.0.0/16',
  natGateways: 1,
  taskCpu: 1024,
  taskMemoryMiB: 2048,
  ioThreads: 1,
  actorThreads: 1,
  pgWriters: 2,
  desiredTasks: 3,
  minTasks: 3,
  maxTasks: 6,
  // A 1-vCPU task at half of the durable rate measured on 2 cores
  // (docs/cost.md): about 3,000 requests/s, 180,000 a minute.
  requestsPerTaskPerMinute: 180_000,
  eventsTopicPartitions: 12,
  auroraMinAcu: 0.5,
  auroraMaxAcu: 4,
  auroraBackupDays: 1,
  kafkaBrokers: 3,
  kafkaInstanceType: 'kafka.t3.small',
  kafkaVolumeGiB: 20,
  redisNodeType: 'cache.t4g.micro',
  redisReplicas: 1,
  logRetentionDays: 7,
};

export const prod: EnvironmentConfig = {
  ...shared,
  name: 'prod',
  production: true,
  vpcCidr: '10.30.0.0/16',
  natGateways: 3,
  taskCpu: 2048,
  taskMemoryMiB: 4096,
  ioThreads: 2,
  actorThreads: 2,
  pgWriters: 2,
  desiredTasks: 6,
  minTasks: 3,
  maxTasks: 24,
  requestsPerTaskPerMinute: 360_000,
  eventsTopicPartitions: 48,
  auroraMinAcu: 2,
  auroraMaxAcu: 32,
  auroraBackupDays: 14,
  kafkaBrokers: 3,
  kafkaInstanceType: 'kafka.m7g.large',
  kafkaVolumeGiB: 500,
  redisNodeType: 'cache.r7g.large',
  redisReplicas: 2,
  logRetentionDays: 30,
};

export const environments: Record<string, EnvironmentConfig> = { dev, prod };

/**
 * Throws unless the stop of a task is consistent: the node ends by itself
 * before ECS kills it, keeps serving while the ALB may still send to it, and
 * the ALB drains for longer than a request may take.
 */
export function checkShutdownTimings(c: EnvironmentConfig): void {
  const fail = (why: string) => {
    throw new Error(`environment ${c.name}: ${why}`);
  };
  if (c.stopTimeoutSeconds > 120) fail('Fargate allows a stopTimeout of at most 120 s');
  if (c.shutdownTimeoutSeconds + 5 > c.stopTimeoutSeconds)
    fail('--shutdown-timeout-seconds must be at least 5 s below the stopTimeout');
  if (c.shutdownDelayMs < c.healthCheckIntervalSeconds * c.unhealthyThreshold * 1000)
    fail('--shutdown-delay-ms must cover the ALB health check (interval x unhealthy threshold)');
  if (c.shutdownDelayMs + c.requestTimeoutMs + 5000 > c.shutdownTimeoutSeconds * 1000)
    fail('--shutdown-timeout-seconds must cover the delay, one request deadline and 5 s of commits and relay');
  if (c.deregistrationDelaySeconds * 1000 < 2 * c.requestTimeoutMs)
    fail('the deregistration delay must be at least two request deadlines');
  if (c.deregistrationDelaySeconds > c.shutdownTimeoutSeconds)
    fail('the deregistration delay should not exceed the shutdown deadline (deployments would crawl)');
  if (c.availabilityZones.length !== 3) fail('exactly 3 availability zones');
  if (c.kafkaBrokers % c.availabilityZones.length !== 0)
    fail('MSK needs a multiple of the AZ count in brokers');
  if (c.minTasks > c.desiredTasks || c.desiredTasks > c.maxTasks)
    fail('minTasks <= desiredTasks <= maxTasks');
}
