#!/usr/bin/env node
// The CDK app: one stack per environment, `rsv-dev` and `rsv-prod`
// (lib/config.ts has their sizes). Context overrides per deployment:
//   cdk deploy rsv-dev -c imageTag=git-abc123 -c alarmEmail=oncall@example.com
// `cdk synth` needs no AWS account or network: the stacks are
// environment-agnostic but for the region, and every AZ is named.
import { App } from 'aws-cdk-lib';
import { environments, EnvironmentConfig } from '../lib/config';
import { ReservationsStack } from '../lib/reservations-stack';

const app = new App();
const context = (key: string): string | undefined => app.node.tryGetContext(key);
for (const base of Object.values(environments)) {
  const config: EnvironmentConfig = {
    ...base,
    imageTag: context('imageTag') ?? base.imageTag,
    alarmEmail: context('alarmEmail') ?? base.alarmEmail,
    certificateArn: context(`${base.name}CertificateArn`) ?? base.certificateArn,
  };
  new ReservationsStack(app, `rsv-${config.name}`, {
    config,
    env: { region: config.region },
    description: `reservations (${config.name}): ECS Fargate, Aurora, MSK, ElastiCache`,
  });
}
