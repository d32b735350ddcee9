"""MeshCA: one root and one intermediate per cluster (pulumi-tls), replacing Istio's certs Makefile.

Facts from Istio's tools/certs (common.mk): RSA 4096, 3650 days, root O=Istio CN=Root CA;
intermediate O=Istio CN=Intermediate CA L=<cluster>, SAN DNS:istiod.istio-system.svc, a CA that
may only sign leaves. Every PEM leaves this component as a secret Output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

KEY_BITS = 4096
VALIDITY_HOURS = 3650 * 24
CA_USES = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]
ISTIOD_SAN = "istiod.istio-system.svc"
CACERTS_KEYS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


def cert_chain(intermediate_pem: str, root_pem: str) -> str:
    """cert-chain.pem: the intermediate first, then the root (Istio's `cat ca-cert.pem root-cert.pem`)."""
    first = intermediate_pem if intermediate_pem.endswith("\n") else intermediate_pem + "\n"
    return first + root_pem


@dataclass
class MeshCAArgs:
    clusters: Sequence[str]


class MeshCA(pulumi.ComponentResource):
    root_cert_pem: pulumi.Output[str]
    cacerts: dict[str, dict[str, pulumi.Output[str]]]

    def __init__(self, name: str, args: MeshCAArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kiali-multicluster:index:MeshCA", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        root_key = tls.PrivateKey(f"{name}-root-key", algorithm="RSA", rsa_bits=KEY_BITS, opts=child)
        root = tls.SelfSignedCert(
            f"{name}-root-cert",
            private_key_pem=root_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(organization="Istio", common_name="Root CA"),
            validity_period_hours=VALIDITY_HOURS,
            is_ca_certificate=True,
            set_subject_key_id=True,
            allowed_uses=CA_USES,
            opts=child,
        )
        self.root_cert_pem = pulumi.Output.secret(root.cert_pem)
        self.cacerts = {}
        for cluster in args.clusters:
            key = tls.PrivateKey(f"{name}-{cluster}-key", algorithm="RSA", rsa_bits=KEY_BITS, opts=child)
            csr = tls.CertRequest(
                f"{name}-{cluster}-csr",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(organization="Istio", common_name="Intermediate CA", locality=cluster),
                dns_names=[ISTIOD_SAN],
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{name}-{cluster}-cert",
                cert_request_pem=csr.cert_request_pem,
                ca_private_key_pem=root_key.private_key_pem,
                ca_cert_pem=root.cert_pem,
                validity_period_hours=VALIDITY_HOURS,
                is_ca_certificate=True,
                # Asks for path length 0. Note: the tls provider leaves MaxPathLenZero unset, so the
                # certificate carries no pathlen constraint (see README, "Mesh CA").
                max_path_length=0,
                set_subject_key_id=True,
                allowed_uses=CA_USES,
                opts=child,
            )
            self.cacerts[cluster] = {
                "ca-cert.pem": pulumi.Output.secret(cert.cert_pem),
                "ca-key.pem": pulumi.Output.secret(key.private_key_pem),
                "root-cert.pem": self.root_cert_pem,
                "cert-chain.pem": pulumi.Output.secret(
                    pulumi.Output.all(cert.cert_pem, root.cert_pem).apply(lambda p: cert_chain(p[0], p[1]))
                ),
            }
        self.register_outputs({"rootCertPem": self.root_cert_pem})
