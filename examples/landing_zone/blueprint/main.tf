# The "baseline" landing-zone blueprint: a VPC with one private subnet per availability zone,
# flow logs to an S3 bucket, and the standard tags. Applied by examples/landing_zone with
# `terraform plan -out` / `terraform apply PLAN`; its outputs are read with `terraform output -json`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

variable "stage" {
  type = string
}

variable "region" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

variable "account_id" {
  type = string
}

variable "owner" {
  type = string
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]
  default_tags {
    tags = {
      stage      = var.stage
      owner      = var.owner
      managed_by = "orch"
    }
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_hostnames = true
  tags = {
    Name = "lz-${var.stage}"
  }
}

resource "aws_subnet" "private" {
  count             = 3
  vpc_id            = aws_vpc.main.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone = data.aws_availability_zones.available.names[count.index]
  tags = {
    Name = "lz-${var.stage}-private-${count.index}"
  }
}

resource "aws_s3_bucket" "flow_logs" {
  bucket = "lz-${var.stage}-${var.account_id}-flow-logs"
}

resource "aws_flow_log" "main" {
  vpc_id               = aws_vpc.main.id
  traffic_type         = "ALL"
  log_destination_type = "s3"
  log_destination      = aws_s3_bucket.flow_logs.arn
}

output "vpc_id" {
  value = aws_vpc.main.id
}

output "subnet_ids" {
  value = aws_subnet.private[*].id
}

output "log_bucket" {
  value = aws_s3_bucket.flow_logs.bucket
}
