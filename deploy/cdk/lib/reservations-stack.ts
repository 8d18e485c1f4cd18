import { CfnOutput, Duration, RemovalPolicy, Size, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as msk from 'aws-cdk-lib/aws-msk';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { checkShutdownTimings, EnvironmentConfig } from './config';
import { collectorConfig, Observability } from './observability';
import { RunTaskToCompletion } from './run-task';

export interface ReservationsStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/** The port the node listens on inside its task. */
const nodePort = 8080;
/** MSK's SASL/SCRAM listener (TLS). */
const kafkaScramPort = 9096;
const redisPort = 6379;
const databaseName = 'reservations';
const collectorImage = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3';
// Apache's own image: kafka-topics.sh to create the topics.
const kafkaToolsImage = 'apache/kafka:3.9.1';

/**
 * One environment of the reservations service: VPC over three AZs, Aurora
 * PostgreSQL Serverless v2, MSK (SASL/SCRAM), ElastiCache Redis, the ECS
 * Fargate service behind an ALB, the one-off tasks that create the Kafka
 * topics and run the migrations before the service updates, and the
 * dashboard and alarms. deploy/README.md explains each choice.
 */
export class ReservationsStack extends Stack {
  readonly service: ecs.FargateService;

  constructor(scope: Construct, id: string, props: ReservationsStackProps) {
    super(scope, id, props);
    const c = props.config;
    checkShutdownTimings(c);
    Tags.of(this).add('application', 'reservations');
    Tags.of(this).add('environment', c.name);
    const removal = c.production ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    // -- network ------------------------------------------------------------
    const vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(c.vpcCidr),
      availabilityZones: c.availabilityZones,
      natGateways: c.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'app', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        { name: 'data', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
    });
    const appSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS });
    const dataSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_ISOLATED });
    const nodesSg = new ec2.SecurityGroup(this, 'NodesSecurityGroup', {
      vpc,
      description: 'reservations nodes and their one-off tasks',
    });
    // Nodes forward requests to the owner of a partition over HTTP.
    nodesSg.addIngressRule(nodesSg, ec2.Port.tcp(nodePort), 'node to node (forwarded requests, /health)');
    const databaseSg = new ec2.SecurityGroup(this, 'DatabaseSecurityGroup', {
      vpc,
      description: 'Aurora: from the nodes only',
      allowAllOutbound: false,
    });
    databaseSg.addIngressRule(nodesSg, ec2.Port.tcp(5432), 'nodes and one-off tasks');
    const kafkaSg = new ec2.SecurityGroup(this, 'KafkaSecurityGroup', {
      vpc,
      description: 'MSK: SASL/SCRAM over TLS from the nodes only',
      allowAllOutbound: false,
    });
    kafkaSg.addIngressRule(nodesSg, ec2.Port.tcp(kafkaScramPort), 'nodes and the topics task');
    const redisSg = new ec2.SecurityGroup(this, 'RedisSecurityGroup', {
      vpc,
      description: 'ElastiCache: from the nodes only (no TLS in transit, see deploy/README.md)',
      allowAllOutbound: false,
    });
    redisSg.addIngressRule(nodesSg, ec2.Port.tcp(redisPort), 'nodes');

    // -- secrets ------------------------------------------------------------
    const adminToken = new secretsmanager.Secret(this, 'AdminToken', {
      secretName: `rsv-${c.name}/admin-token`,
      description: 'Bearer token of the admin calls (RSV_ADMIN_TOKEN)',
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
      removalPolicy: removal,
    });
    const tokenSecret = new secretsmanager.Secret(this, 'TokenSecret', {
      secretName: `rsv-${c.name}/token-secret`,
      description: 'HMAC key of session and admission tokens, the same on every node (RSV_TOKEN_SECRET)',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: removal,
    });
    // MSK reads SCRAM credentials from secrets named AmazonMSK_* encrypted
    // with a customer managed key; no punctuation keeps the password safe in
    // the comma-separated RSV_KAFKA_PROPERTIES the entrypoint builds.
    const kafkaKey = new kms.Key(this, 'KafkaSecretKey', {
      description: 'MSK SCRAM secret of the reservations nodes',
      enableKeyRotation: true,
      removalPolicy: removal,
    });
    const kafkaSecret = new secretsmanager.Secret(this, 'KafkaCredentials', {
      secretName: `AmazonMSK_rsv-${c.name}-nodes`,
      description: 'SASL/SCRAM user of the reservations nodes on MSK',
      encryptionKey: kafkaKey,
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ username: 'reservations' }),
        generateStringKey: 'password',
        passwordLength: 40,
        excludePunctuation: true,
      },
      removalPolicy: removal,
    });

    // -- Aurora PostgreSQL Serverless v2 ---------------------------------------
    const database = new rds.DatabaseCluster(this, 'Database', {
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_6 }),
      credentials: rds.Credentials.fromGeneratedSecret('rsv', { secretName: `rsv-${c.name}/database` }),
      defaultDatabaseName: databaseName,
      writer: rds.ClusterInstance.serverlessV2('Writer', { publiclyAccessible: false }),
      readers: [rds.ClusterInstance.serverlessV2('Reader', { publiclyAccessible: false, scaleWithWriter: true })],
      serverlessV2MinCapacity: c.auroraMinAcu,
      serverlessV2MaxCapacity: c.auroraMaxAcu,
      vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      securityGroups: [databaseSg],
      storageEncrypted: true,
      backup: { retention: Duration.days(c.auroraBackupDays) },
      deletionProtection: c.production,
      removalPolicy: c.production ? RemovalPolicy.SNAPSHOT : RemovalPolicy.DESTROY,
      cloudwatchLogsExports: ['postgresql'],
      cloudwatchLogsRetention: c.logRetentionDays,
    });

    // -- MSK ----------------------------------------------------------------
    const kafkaConfiguration = new msk.CfnConfiguration(this, 'KafkaConfiguration', {
      name: `rsv-${c.name}`,
      kafkaVersionsList: [c.kafkaVersion],
      serverProperties: [
        'auto.create.topics.enable=false',
        'default.replication.factor=3',
        'min.insync.replicas=2',
        // SCRAM authenticates; there are no ACLs, every authenticated user
        // may use every topic (one application on the cluster).
        'allow.everyone.if.no.acl.found=true',
      ].join('\n'),
    });
    const kafka = new msk.CfnCluster(this, 'Kafka', {
      clusterName: `rsv-${c.name}`,
      kafkaVersion: c.kafkaVersion,
      numberOfBrokerNodes: c.kafkaBrokers,
      brokerNodeGroupInfo: {
        instanceType: c.kafkaInstanceType,
        clientSubnets: dataSubnets.subnetIds,
        securityGroups: [kafkaSg.securityGroupId],
        storageInfo: { ebsStorageInfo: { volumeSize: c.kafkaVolumeGiB } },
      },
      // librdkafka 2.0 (Debian 12) has no MSK IAM signer: SASL/SCRAM only.
      clientAuthentication: {
        sasl: { scram: { enabled: true }, iam: { enabled: false } },
        unauthenticated: { enabled: false },
      },
      encryptionInfo: { encryptionInTransit: { clientBroker: 'TLS', inCluster: true } },
      configurationInfo: { arn: kafkaConfiguration.attrArn, revision: kafkaConfiguration.attrLatestRevisionRevision },
    });
    kafka.applyRemovalPolicy(removal);
    const kafkaScram = new msk.CfnBatchScramSecret(this, 'KafkaScramSecrets', {
      clusterArn: kafka.attrArn,
      secretArnList: [kafkaSecret.secretArn],
    });
    const brokers = new cr.AwsCustomResource(this, 'KafkaBootstrapBrokers', {
      onUpdate: {
        service: 'Kafka',
        action: 'GetBootstrapBrokers',
        parameters: { ClusterArn: kafka.attrArn },
        physicalResourceId: cr.PhysicalResourceId.of(`${c.name}-bootstrap-brokers`),
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: [kafka.attrArn] }),
      installLatestAwsSdk: false,
    });
    const bootstrapBrokers = brokers.getResponseField('BootstrapBrokerStringSaslScram');

    // -- ElastiCache Redis ------------------------------------------------------
    // No TLS in transit: Debian 12's hiredis 0.14 has none. Redis holds no
    // truth (queues, counters, a read model) and is reachable only from the
    // nodes' security group inside the VPC; data at rest is encrypted.
    // deploy/README.md, "Redis and TLS", has the reasoning and the stunnel
    // alternative.
    const redisSubnets = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'reservations Redis, isolated subnets',
      subnetIds: dataSubnets.subnetIds,
    });
    const redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: `reservations ${c.name}: waiting rooms, rate limits, read model`,
      engine: 'redis',
      engineVersion: '7.1',
      cacheNodeType: c.redisNodeType,
      numCacheClusters: 1 + c.redisReplicas,
      automaticFailoverEnabled: c.redisReplicas > 0,
      multiAzEnabled: c.redisReplicas > 0,
      cacheSubnetGroupName: redisSubnets.ref,
      securityGroupIds: [redisSg.securityGroupId],
      port: redisPort,
      atRestEncryptionEnabled: true,
      transitEncryptionEnabled: false,
    });

    // -- ECS ------------------------------------------------------------------
    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      clusterName: `rsv-${c.name}`,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    const repository = ecr.Repository.fromRepositoryName(this, 'Repository', c.repositoryName);
    const image = ecs.ContainerImage.fromEcrRepository(repository, c.imageTag);
    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/rsv/${c.name}/nodes`,
      retention: c.logRetentionDays as logs.RetentionDays,
      removalPolicy: removal,
    });
    const metricsLogGroupName = `/rsv/${c.name}/metrics`;
    const metricsLogGroup = new logs.LogGroup(this, 'MetricsLogs', {
      logGroupName: metricsLogGroupName,
      retention: logs.RetentionDays.ONE_WEEK,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const opsLogGroup = new logs.LogGroup(this, 'OpsLogs', {
      logGroupName: `/rsv/${c.name}/ops`,
      retention: c.logRetentionDays as logs.RetentionDays,
      removalPolicy: removal,
    });

    // What every container of the image needs to reach the database: libpq's
    // own variables (the node reads them when RSV_PG_DSN is empty), the user
    // and password from the database's secret.
    const databaseEnvironment = {
      RSV_STORE: 'postgres',
      PGHOST: database.clusterEndpoint.hostname,
      PGPORT: database.clusterEndpoint.port.toString(),
      PGDATABASE: databaseName,
      // Encrypted; verify-full needs the RDS CA bundle in the image
      // (deploy/README.md, "Database TLS").
      PGSSLMODE: 'require',
    };
    const databaseSecrets = {
      PGUSER: ecs.Secret.fromSecretsManager(database.secret!, 'username'),
      PGPASSWORD: ecs.Secret.fromSecretsManager(database.secret!, 'password'),
    };
    const kafkaSecrets = {
      RSV_KAFKA_SASL_USERNAME: ecs.Secret.fromSecretsManager(kafkaSecret, 'username'),
      RSV_KAFKA_SASL_PASSWORD: ecs.Secret.fromSecretsManager(kafkaSecret, 'password'),
    };

    const taskDefinition = new ecs.FargateTaskDefinition(this, 'NodeTask', {
      family: `rsv-${c.name}-node`,
      cpu: c.taskCpu,
      memoryLimitMiB: c.taskMemoryMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    taskDefinition.addContainer('node', {
      containerName: 'node',
      image,
      essential: true,
      command: ['serve'],
      portMappings: [{ containerPort: nodePort, name: 'http' }],
      stopTimeout: Duration.seconds(c.stopTimeoutSeconds),
      healthCheck: {
        command: ['CMD', 'reservations', 'healthcheck', '--url', `http://127.0.0.1:${nodePort}/ready`],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(60),
      },
      logging: ecs.LogDrivers.awsLogs({
        logGroup,
        streamPrefix: 'node',
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
      environment: {
        ...databaseEnvironment,
        RSV_LISTEN: `0.0.0.0:${nodePort}`,
        RSV_LOG_FORMAT: 'json',
        RSV_LOG_LEVEL: 'info',
        RSV_IO_THREADS: String(c.ioThreads),
        RSV_ACTOR_THREADS: String(c.actorThreads),
        RSV_PG_WRITERS: String(c.pgWriters),
        RSV_REQUEST_TIMEOUT_MS: String(c.requestTimeoutMs),
        // Every client connection comes through the ALB: a per-address
        // connection cap would cap the ALB itself, so it is off here.
        RSV_CONNECTIONS_PER_ADDRESS_MAX: '0',
        RSV_SHUTDOWN_DELAY_MS: String(c.shutdownDelayMs),
        RSV_SHUTDOWN_TIMEOUT_SECONDS: String(c.shutdownTimeoutSeconds),
        RSV_KAFKA_BROKERS: bootstrapBrokers,
        RSV_KAFKA_TOPIC: c.eventsTopic,
        RSV_REDIS_URL: `redis://${redis.attrPrimaryEndPointAddress}:${redisPort}`,
        RSV_RATE_LIMIT_CUSTOMER: String(c.rateLimitCustomer),
        RSV_RATE_LIMIT_ADDRESS: String(c.rateLimitAddress),
        // Every request reaches a node from the ALB's addresses in the VPC:
        // the client is the address the ALB appended to X-Forwarded-For, so
        // that per-address limits count clients, not the balancer.
        RSV_TRUSTED_PROXIES: vpc.vpcCidrBlock,
        RSV_CLUSTER: 'true',
        RSV_CLUSTER_PARTITIONS: String(c.clusterPartitions),
        RSV_CLUSTER_GROUP: c.clusterGroup,
        RSV_CLUSTER_TOPIC: c.clusterTopic,
        RSV_CLUSTER_SESSION_TIMEOUT_MS: String(c.clusterSessionTimeoutMs),
        RSV_CLUSTER_HEARTBEAT_MS: String(c.clusterHeartbeatMs),
        // RSV_ADVERTISE and RSV_NODE_ID are set by the image's entrypoint
        // from the task metadata endpoint (deploy/rsv-entrypoint).
      },
      secrets: {
        RSV_ADMIN_TOKEN: ecs.Secret.fromSecretsManager(adminToken),
        RSV_TOKEN_SECRET: ecs.Secret.fromSecretsManager(tokenSecret),
        ...databaseSecrets,
        ...kafkaSecrets,
      },
    });
    taskDefinition.addContainer('metrics', {
      containerName: 'metrics',
      image: ecs.ContainerImage.fromRegistry(collectorImage),
      essential: false,
      cpu: 64,
      memoryReservationMiB: 128,
      command: ['--config=env:AOT_CONFIG_CONTENT'],
      environment: { AOT_CONFIG_CONTENT: collectorConfig(c, metricsLogGroupName) },
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'metrics' }),
    });
    metricsLogGroup.grantWrite(taskDefinition.taskRole);

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: `rsv-${c.name}`,
      cluster,
      taskDefinition,
      desiredCount: c.desiredTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [nodesSg],
      healthCheckGracePeriod: Duration.seconds(60),
      enableExecuteCommand: true,
      availabilityZoneRebalancing: ecs.AvailabilityZoneRebalancing.ENABLED,
    });

    // -- ALB ------------------------------------------------------------------
    const loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      idleTimeout: Duration.seconds(60),
    });
    const listener = c.certificateArn
      ? loadBalancer.addListener('Https', {
          port: 443,
          certificates: [elbv2.ListenerCertificate.fromArn(c.certificateArn)],
          sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        })
      : loadBalancer.addListener('Http', { port: 80 });
    if (c.certificateArn) loadBalancer.addRedirect();
    const targetGroup = listener.addTargets('Nodes', {
      port: nodePort,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.service.loadBalancerTarget({ containerName: 'node', containerPort: nodePort })],
      deregistrationDelay: Duration.seconds(c.deregistrationDelaySeconds),
      healthCheck: {
        path: '/ready',
        healthyHttpCodes: '200',
        interval: Duration.seconds(c.healthCheckIntervalSeconds),
        timeout: Duration.seconds(3),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: c.unhealthyThreshold,
      },
    });

    // -- autoscaling ----------------------------------------------------------
    const scaling = this.service.autoScaleTaskCount({ minCapacity: c.minTasks, maxCapacity: c.maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: c.cpuTargetPercent,
      scaleOutCooldown: Duration.seconds(60),
      // Every scale-in moves partitions (a rebalance): not too eagerly.
      scaleInCooldown: Duration.minutes(10),
    });
    scaling.scaleOnRequestCount('Requests', {
      requestsPerTarget: c.requestsPerTaskPerMinute,
      targetGroup,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.minutes(10),
    });

    // -- one-off tasks: topics, then migrations, then the service ----------------
    const topicsTask = new ecs.FargateTaskDefinition(this, 'TopicsTask', {
      family: `rsv-${c.name}-topics`,
      cpu: 512,
      memoryLimitMiB: 1024,
    });
    const jaas =
      'org.apache.kafka.common.security.scram.ScramLoginModule required ' +
      'username=\\"$KAFKA_USER\\" password=\\"$KAFKA_PASSWORD\\";';
    const createTopic = (topic: string, partitions: number, config: string) =>
      `/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BROKERS" --command-config /tmp/client.properties ` +
      `--create --if-not-exists --topic ${topic} --partitions ${partitions} --replication-factor 3 ${config}`;
    topicsTask.addContainer('topics', {
      containerName: 'topics',
      image: ecs.ContainerImage.fromRegistry(kafkaToolsImage),
      essential: true,
      entryPoint: ['/bin/bash', '-c'],
      command: [
        [
          'set -euo pipefail',
          'printf "security.protocol=SASL_SSL\\nsasl.mechanism=SCRAM-SHA-512\\nsasl.jaas.config=%s\\n" ' +
            `"${jaas}" > /tmp/client.properties`,
          createTopic(c.eventsTopic, c.eventsTopicPartitions, '--config min.insync.replicas=2'),
          // One partition per cluster partition: the group's assignment is
          // the partition ownership (--cluster-partitions must match).
          createTopic(c.clusterTopic, c.clusterPartitions, '--config min.insync.replicas=2 --config retention.ms=3600000'),
          `/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BROKERS" --command-config /tmp/client.properties --describe --topic ${c.eventsTopic} --topic ${c.clusterTopic}`,
        ].join('\n'),
      ],
      environment: { BROKERS: bootstrapBrokers },
      secrets: {
        KAFKA_USER: ecs.Secret.fromSecretsManager(kafkaSecret, 'username'),
        KAFKA_PASSWORD: ecs.Secret.fromSecretsManager(kafkaSecret, 'password'),
      },
      logging: ecs.LogDrivers.awsLogs({ logGroup: opsLogGroup, streamPrefix: 'topics' }),
    });
    const topics = new RunTaskToCompletion(this, 'CreateTopics', {
      cluster,
      taskDefinition: topicsTask,
      containerName: 'topics',
      subnets: appSubnets.subnets,
      securityGroups: [nodesSg],
    });
    topics.node.addDependency(kafkaScram, kafka);

    const migrateTask = new ecs.FargateTaskDefinition(this, 'MigrateTask', {
      family: `rsv-${c.name}-migrate`,
      cpu: 256,
      memoryLimitMiB: 512,
    });
    migrateTask.addContainer('migrate', {
      containerName: 'migrate',
      image,
      essential: true,
      command: ['migrate'],
      environment: databaseEnvironment,
      secrets: databaseSecrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup: opsLogGroup, streamPrefix: 'migrate' }),
    });
    const migrate = new RunTaskToCompletion(this, 'Migrate', {
      cluster,
      taskDefinition: migrateTask,
      containerName: 'migrate',
      subnets: appSubnets.subnets,
      securityGroups: [nodesSg],
    });
    migrate.node.addDependency(database);
    // The service (and so every new task definition revision) waits for both.
    this.service.node.addDependency(topics, migrate);

    // -- operations: psql in the VPC for scripts/ops status and reset ---------------
    const opsTask = new ecs.FargateTaskDefinition(this, 'OpsTask', {
      family: `rsv-${c.name}-ops`,
      cpu: 256,
      memoryLimitMiB: 512,
    });
    opsTask.addContainer('psql', {
      containerName: 'psql',
      image: ecs.ContainerImage.fromRegistry('public.ecr.aws/docker/library/postgres:16-bookworm'),
      essential: true,
      entryPoint: ['psql', '-v', 'ON_ERROR_STOP=1', '-X'],
      command: ['-c', 'SELECT version()'],
      environment: {
        PGHOST: databaseEnvironment.PGHOST,
        PGPORT: databaseEnvironment.PGPORT,
        PGDATABASE: databaseName,
        PGSSLMODE: 'require',
        RSV_ENVIRONMENT: c.name,
      },
      secrets: databaseSecrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup: opsLogGroup, streamPrefix: 'ops' }),
    });

    // -- dashboard and alarms -------------------------------------------------------
    const observability = new Observability(this, 'Observability', {
      config: c,
      service: this.service,
      loadBalancer,
      targetGroup,
      database,
    });

    // -- outputs: what scripts/ops and deploy/scripts/deploy read ------------------------
    const output = (id: string, value: string) => new CfnOutput(this, id, { value });
    output('Environment', c.name);
    output('Url', `${c.certificateArn ? 'https' : 'http'}://${loadBalancer.loadBalancerDnsName}`);
    output('ClusterName', cluster.clusterName);
    output('ServiceName', this.service.serviceName);
    output('MigrateTaskDefinition', migrateTask.taskDefinitionArn);
    output('OpsTaskDefinition', opsTask.taskDefinitionArn);
    output('TaskSubnets', appSubnets.subnetIds.join(','));
    output('TaskSecurityGroup', nodesSg.securityGroupId);
    output('OpsLogGroup', opsLogGroup.logGroupName);
    output('AdminTokenSecret', adminToken.secretArn);
    output('AlarmTopic', observability.topic.topicArn);
    output('DatabaseEndpoint', database.clusterEndpoint.hostname);
    output('ReaderEndpoint', database.clusterReadEndpoint.hostname);
  }
}
