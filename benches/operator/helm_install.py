"""`make bench` helper: installs a chart with the real Helm 4 engine (helm-python-sdk) and waits as
Helm 4 does (`wait="watcher"`, kstatus), then prints how long the install took in milliseconds.

    python helm_install.py KUBECONFIG CHART NAMESPACE

Only the install call is timed, not the interpreter start or the import.
"""

import sys
import time

import helm_python


def main() -> None:
    kubeconfig, chart, namespace = sys.argv[1:4]
    helm = helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    started = time.monotonic()
    helm.install(chart, "aws-ebs-csi-driver", {}, namespace=namespace, timeout=300, wait="watcher")
    print(f"{(time.monotonic() - started) * 1000:.1f}")


if __name__ == "__main__":
    main()
