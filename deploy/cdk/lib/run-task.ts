import { CustomResource, Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';

// The custom resource's two handlers, inline (no bundling, so `cdk synth`
// needs nothing but node_modules). The Lambda runtime brings the SDK v3.
const startTask = `
const { ECSClient, RunTaskCommand } = require('@aws-sdk/client-ecs');
exports.handler = async (event) => {
  if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId };
  const p = event.ResourceProperties;
  const out = await new ECSClient({}).send(new RunTaskCommand({
    cluster: p.Cluster, taskDefinition: p.TaskDefinition, launchType: 'FARGATE', count: 1,
    startedBy: 'cloudformation',
    networkConfiguration: { awsvpcConfiguration: {
      subnets: p.Subnets, securityGroups: p.SecurityGroups, assignPublicIp: 'DISABLED' } },
  }));
  if (!out.tasks || out.tasks.length !== 1)
    throw new Error('RunTask started no task: ' + JSON.stringify(out.failures));
  console.log('started', out.tasks[0].taskArn);
  return { PhysicalResourceId: out.tasks[0].taskArn };
};`;

const taskStopped = `
const { ECSClient, DescribeTasksCommand } = require('@aws-sdk/client-ecs');
exports.handler = async (event) => {
  if (event.RequestType === 'Delete') return { IsComplete: true };
  const p = event.ResourceProperties;
  const out = await new ECSClient({}).send(new DescribeTasksCommand({
    cluster: p.Cluster, tasks: [event.PhysicalResourceId] }));
  const task = out.tasks && out.tasks[0];
  if (!task) throw new Error('task ' + event.PhysicalResourceId + ' not found');
  if (task.lastStatus !== 'STOPPED') return { IsComplete: false };
  const container = (task.containers || []).find((c) => c.name === p.Container);
  const code = container ? container.exitCode : undefined;
  if (code === 0) return { IsComplete: true };
  throw new Error('task ' + task.taskArn + ' stopped (' + task.stoppedReason + '), exit code ' +
    code + ': its log is in CloudWatch Logs, stream prefix ' + p.Container);
};`;

export interface RunTaskToCompletionProps {
  readonly cluster: ecs.ICluster;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  /** The container whose exit code decides success. */
  readonly containerName: string;
  readonly subnets: ec2.ISubnet[];
  readonly securityGroups: ec2.ISecurityGroup[];
}

/**
 * A one-off Fargate task that CloudFormation runs, and waits for, whenever
 * its task definition changes: the migrations (`reservations migrate`) before
 * the service updates, the Kafka topics before the first node starts. A task
 * that exits non-zero fails the deployment, which rolls back before the
 * service is touched. Resources that must come after it depend on it.
 */
export class RunTaskToCompletion extends Construct {
  readonly resource: CustomResource;

  constructor(scope: Construct, id: string, props: RunTaskToCompletionProps) {
    super(scope, id);
    const onEvent = new lambda.Function(this, 'Start', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline(startTask),
      timeout: Duration.minutes(1),
      logGroup: new logs.LogGroup(this, 'StartLog', { retention: logs.RetentionDays.ONE_MONTH }),
    });
    const isComplete = new lambda.Function(this, 'Wait', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline(taskStopped),
      timeout: Duration.minutes(1),
      logGroup: new logs.LogGroup(this, 'WaitLog', { retention: logs.RetentionDays.ONE_MONTH }),
    });
    onEvent.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ecs:RunTask'],
        resources: [props.taskDefinition.taskDefinitionArn],
      }),
    );
    isComplete.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ecs:DescribeTasks'], resources: ['*'] }),
    );
    const passRoles = [props.taskDefinition.taskRole.roleArn];
    if (props.taskDefinition.executionRole) passRoles.push(props.taskDefinition.executionRole.roleArn);
    onEvent.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['iam:PassRole'], resources: passRoles }),
    );
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: onEvent,
      isCompleteHandler: isComplete,
      queryInterval: Duration.seconds(10),
      totalTimeout: Duration.minutes(30),
    });
    this.resource = new CustomResource(this, 'Run', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::RunTaskToCompletion',
      properties: {
        Cluster: props.cluster.clusterArn,
        // A new revision (a new image tag, say) changes this, so the task
        // runs again on every deployment that changes what it runs.
        TaskDefinition: props.taskDefinition.taskDefinitionArn,
        Container: props.containerName,
        Subnets: props.subnets.map((s) => s.subnetId),
        SecurityGroups: props.securityGroups.map((g) => g.securityGroupId),
      },
    });
  }
}
