"""C2PA Content Credentials: a signed manifest in every output file that C2PA can carry, and
reading one back for `marionette verify`.

What a manifest says (one `c2pa.actions.v2` assertion, claim version 2):
- `c2pa.created` with `digitalSourceType` trainedAlgorithmicMedia (IPTC): made by a trained model;
- the generator: `claim_generator_info` and the action's `softwareAgent` = marionette + version,
  the action's parameters = the renderer (from the container tag, `provenance.container_tags`);
- ingredients: one per target photo and per driver, `inputTo`, holding the file's name and its
  SHA-256 only (never its pixels; no thumbnail of it).

Who signs: the certificate chain and private key (PEM files) named by the environment variables
CERT_ENV and KEY_ENV; without them, a local certificate that marionette generates once (offline,
with `cryptography`) in the user's config folder ($XDG_CONFIG_HOME/marionette/c2pa, else
~/.config/marionette/c2pa): a local root and an ES256 signing certificate issued by it (C2PA
refuses a self-signed end-entity certificate). Such a manifest is cryptographically sound
(tampering breaks it) but names nobody anyone else trusts; `verify` says so. Where the config
folder cannot be written, a local certificate made for the run signs its outputs (one warning).

Formats (c2pa-python 0.38, c2pa-rs 0.91): mp4, mov, PNG, JPEG, GIF and WebP carry the manifest
inside; mkv has no C2PA binding, so its manifest is a sidecar beside it (`out.mkv` -> `out.c2pa`,
the C2PA spec's naming) whose hard binding is a SHA-256 of the whole file.

Who is trusted (`verify`): the root certificates of a trust list the user gives, PEM bundles named
by TRUST_ENV and by `verify --trust`, and this machine's local root (its key never leaves this
machine's config folder). A manifest signed by any other certificate is sound but proves nothing
about who made the file: anyone can make a certificate and a manifest that names marionette.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marionette import __version__
from marionette.errors import InputError
from marionette.media import atomic_path

log = logging.getLogger(__name__)

CERT_ENV = "MARIONETTE_C2PA_CERT"  # PEM certificate chain (signer first) of a user-supplied signer
KEY_ENV = "MARIONETTE_C2PA_KEY"  # its PEM private key (EC P-256/384/521 or Ed25519)
TRUST_ENV = "MARIONETTE_TRUSTED_CERTS"  # PEM bundle(s) of trusted root certificates, os.pathsep-separated
LOCAL_ORG = "marionette, self-generated local certificate"  # organization of the local certificates
LOCAL_DAYS = 3650  # validity of the local certificates
LOCAL_FILES = ("signer.key", "root.pem", "signer.pem")  # the local certificate's files, in the order they are stored
MIME_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".png": "image/png", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}  # what carries a manifest inside
SIDECAR_TYPES = {".mkv": "video/x-matroska"}  # no C2PA binding: a sidecar manifest hashing the whole file
SIDECAR_SUFFIX = ".c2pa"  # out.mkv -> out.c2pa
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}  # no preview image inside the manifest (a GIF's took 1 s)


@dataclass(frozen=True)
class Ingredient:
    role: str  # "target" or "driver"
    name: str  # file name (no folder)
    sha256: str  # hex digest of the file's bytes

    @classmethod
    def of(cls, role: str, path: str | Path) -> Ingredient:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return cls(role, Path(path).name, digest.hexdigest())

    def to_manifest(self) -> dict:
        return {"title": self.name, "relationship": "inputTo", "instance_id": f"sha256:{self.sha256}",
                "description": f"{self.role}; SHA-256 {self.sha256}"}


@dataclass(frozen=True)
class Credentials:
    chain: bytes  # PEM certificates, signer first
    key: bytes  # PEM private key
    alg: str  # C2PA signing algorithm ("es256", ...)


@dataclass(frozen=True)
class ManifestReport:
    state: str  # c2pa validation state: "Trusted" (signer on the trust list), "Valid" (sound, untrusted signer) or "Invalid"
    valid: bool  # the signature and every hash check out (state Trusted or Valid)
    failures: tuple[str, ...]  # c2pa failure codes, e.g. assertion.dataHash.mismatch
    signer: str  # common name and issuer of the signing certificate
    local_signer: bool  # signed with a marionette self-generated certificate
    generator: str  # claim generator, e.g. "marionette 0.1.0"
    action: str  # first action, e.g. "c2pa.created (trainedAlgorithmicMedia; renderer warp)"
    ingredients: tuple[str, ...]  # "name (sha256:...)" of each ingredient

    @property
    def by_marionette(self) -> bool:
        """A valid manifest whose claim names marionette as its generator."""
        return self.valid and self.generator.startswith("marionette")

    @property
    def trusted(self) -> bool:
        """Valid, and signed by a certificate whose root is on the trust list."""
        return self.state == "Trusted"


def config_dir() -> Path:
    """The user's marionette config folder (XDG_CONFIG_HOME respected)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "marionette"


def _algorithm(key_pem: bytes, source: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{source}: not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    curves = {256: "es256", 384: "es384", 521: "es512"}
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size in curves:
        return curves[key.curve.key_size]
    raise InputError(f"{source}: unsupported key type for C2PA (use EC P-256/384/521 or Ed25519)")


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


_ONE_RUN: dict[Path, Credentials] = {}  # local signers made for this run only, by the config folder that could not store them


def credentials() -> Credentials:
    """The user's signer (CERT_ENV + KEY_ENV) or the local one, generated on first use."""
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if cert or key:
        if not (cert and key):
            raise InputError(f"set both {CERT_ENV} and {KEY_ENV} (PEM certificate chain and private key)")
        key_pem = _read(key)
        return Credentials(_read(cert), key_pem, _algorithm(key_pem, key))
    folder = config_dir() / "c2pa"
    if folder in _ONE_RUN:
        return _ONE_RUN[folder]
    paths = {name: folder / name for name in LOCAL_FILES}
    if not all(p.is_file() for p in paths.values()):
        files = _generate_local()
        try:
            _store_local(folder, files)
        except OSError as e:  # a read-only or full home, a file where the folder should be: sign all the same
            log.warning(f"{folder}: cannot store the local C2PA certificate ({e.strerror or e}); outputs are "
                        "signed with a certificate made for this run only")
            _ONE_RUN[folder] = Credentials(files["signer.pem"], files["signer.key"], "es256")
            return _ONE_RUN[folder]
    return Credentials(paths["signer.pem"].read_bytes(), paths["signer.key"].read_bytes(), "es256")


def _generate_local() -> dict[str, bytes]:
    """A local root (CA, path length 0) and an ES256 signing certificate it issues, with the key
    usage and extended key usage C2PA's certificate profile asks for: the PEM files LOCAL_FILES."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ORG),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: x509.Name, public_key, ca: bool) -> x509.CertificateBuilder:
        usage = {"content_commitment": False, "key_encipherment": False, "data_encipherment": False,
                 "key_agreement": False, "encipher_only": False, "decipher_only": False}
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(name("marionette local root"))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=LOCAL_DAYS))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if not ca:
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False))
        return builder

    root = certificate(name("marionette local root"), root_key.public_key(), ca=True).sign(root_key, hashes.SHA256())
    signer = certificate(name("marionette local signer"), key.public_key(),
                         ca=False).sign(root_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    return {"signer.key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            "root.pem": root.public_bytes(pem), "signer.pem": signer.public_bytes(pem) + root.public_bytes(pem)}


def _store_local(folder: Path, files: dict[str, bytes]) -> None:
    """Write the local certificate's files into `folder`, each atomically, the key file 0600;
    signer.pem last: its presence means the set is whole."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LOCAL_FILES:
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(files[name])
        if name == "signer.key":
            os.chmod(folder / name, 0o600)  # atomic_path gives outputs the usual permissions


def manifest_definition(title: str, generator: str, renderer: str, ingredients: Sequence[Ingredient]) -> dict:
    """The manifest marionette signs (see the module docstring)."""
    agent = {"name": "marionette", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [{
            "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent,
            "parameters": {"renderer": renderer, "generator": generator}}]}}],
        "ingredients": [i.to_manifest() for i in ingredients],
    }


def sign_file(path: Path, suffix: str, definition: dict) -> bytes | None:
    """Sign the finished file `path` (format by `suffix`, as `path` may be a temporary name): a
    format with a C2PA binding gets the manifest embedded (None returned); mkv is left as it is and
    its sidecar manifest returned (see write_sidecar); any other format is left unsigned (None)."""
    import c2pa

    suffix = suffix.lower()
    sidecar = suffix in SIDECAR_TYPES
    mime = SIDECAR_TYPES.get(suffix) or MIME_TYPES.get(suffix)
    if mime is None:
        return None
    creds = credentials()
    signed = path.with_name(path.name + ".c2pa")
    try:
        context = c2pa.Context.from_dict(SETTINGS)
        with (c2pa.Signer.from_info(c2pa.C2paSignerInfo(creds.alg, creds.chain, creds.key, None)) as signer,
              c2pa.Builder(definition, context=context) as builder, open(path, "rb") as source,
              open(os.devnull if sidecar else signed, "w+b") as dest):  # a sidecar's asset copy is not kept
            if sidecar:
                builder.set_no_embed()
            manifest = builder.sign(signer, mime, source, dest)
        if sidecar:
            return manifest
        os.replace(signed, path)
    except c2pa.C2paError as e:
        signed.unlink(missing_ok=True)
        raise InputError(f"{path}: C2PA signing failed ({e})") from None
    return None


def sidecar_path(path: Path) -> Path:
    """Where the sidecar manifest of `path` lives: beside it, the suffix replaced by SIDECAR_SUFFIX."""
    return path.with_suffix(SIDECAR_SUFFIX)


def write_sidecar(path: Path, manifest: bytes) -> None:
    """Write `manifest` (from sign_file) as the sidecar of the output `path`, now in place,
    atomically (an earlier output's sidecar is replaced)."""
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_bytes(manifest)


def trust_anchors(files: Sequence[str | Path] = ()) -> str:
    """The PEM root certificates `verify` trusts: this machine's local root (when stored), the
    bundles named by TRUST_ENV and `files` (`verify --trust`). A file that holds no PEM
    certificate is an error, named."""
    from cryptography import x509

    local = config_dir() / "c2pa" / "root.pem"
    paths = [local] if local.is_file() else []
    paths += [Path(p) for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p]
    paths += [Path(f) for f in files]
    bundles = []
    for path in paths:
        pem = _read(path)
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise InputError(f"{path}: not a PEM bundle of certificates (a trust list names root "
                             "certificates, -----BEGIN CERTIFICATE-----)") from None
        bundles.append(pem.decode())
    return "\n".join(bundles)


def read_manifest(path: Path, anchors: str) -> ManifestReport | None:
    """The active manifest of `path` (embedded, or an mkv's sidecar), validated with the PEM root
    certificates `anchors` (trust_anchors) trusted; None when the file has none."""
    import c2pa

    suffix = path.suffix.lower()
    sidecar = sidecar_path(path)
    if suffix not in MIME_TYPES and not (suffix in SIDECAR_TYPES and sidecar.is_file()):
        return None
    sidecar_manifest = _read(sidecar) if suffix in SIDECAR_TYPES else None
    context = c2pa.Context.from_dict({"trust": {"user_anchors": anchors}} if anchors else {})
    try:
        with open(path, "rb") as stream:
            reader = c2pa.Reader.try_create(MIME_TYPES.get(suffix) or SIDECAR_TYPES[suffix], stream, sidecar_manifest,
                                            context=context)
            if reader is None:
                return None
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError as e:
        return ManifestReport("Invalid", False, (f"unreadable: {e}",), "", False, "", "", ())
    manifest = store["manifests"][store["active_manifest"]]
    info = manifest.get("signature_info", {})
    generators = manifest.get("claim_generator_info") or [{"name": manifest.get("claim_generator", "")}]
    actions = [a for assertion in manifest.get("assertions", []) if assertion["label"].startswith("c2pa.actions")
               for a in assertion["data"].get("actions", [])]
    action = ""
    if actions:
        first = actions[0]
        details = [first.get("digitalSourceType", "").rsplit("/", 1)[-1]]
        details += [f"{k} {v}" for k, v in first.get("parameters", {}).items() if k == "renderer"]
        action = f"{first['action']} ({'; '.join(d for d in details if d)})"
    failures = tuple(item["code"] for item in store.get("validation_results", {}).get("activeManifest", {}).get("failure", []))
    state = store.get("validation_state", "Invalid")
    return ManifestReport(
        state=state, valid=state in ("Valid", "Trusted"), failures=failures,
        signer=f"{info.get('common_name', '?')} (issuer {info.get('issuer', '?')})",
        local_signer=info.get("issuer") == LOCAL_ORG,
        generator=" ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip(),
        action=action,
        ingredients=tuple(f"{i.get('title', '?')} ({i.get('instance_id', 'no hash')})" for i in manifest.get("ingredients", [])),
    )
