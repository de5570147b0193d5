//! cnd-cloud: the Launcher and ResultChannel of cnd-core for Kubernetes, SQS and local processes (work in progress).
