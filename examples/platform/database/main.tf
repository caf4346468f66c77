# The platform's database: a managed PostgreSQL instance. Applied by examples/platform with
# `terraform plan -out` / `terraform apply PLAN`; `address` and `port` are read with
# `terraform output -json` and passed to the application's Helm release.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

variable "name" {
  type = string
}

variable "engine" {
  type    = string
  default = "postgres"
}

variable "size_gb" {
  type = number
}

resource "aws_db_instance" "main" {
  identifier                  = var.name
  engine                      = var.engine
  engine_version              = "16"
  instance_class              = "db.t4g.medium"
  allocated_storage           = var.size_gb
  manage_master_user_password = true
  username                    = "app"
  backup_retention_period     = 7
  skip_final_snapshot         = false
  final_snapshot_identifier   = "${var.name}-final"
}

output "address" {
  value = aws_db_instance.main.address
}

output "port" {
  value = aws_db_instance.main.port
}
