package main

// The simulator's built-in certificate (simulator/internal/testcert.go in govmomi 0.24.2)
// is a 1024-bit RSA certificate marked CA:TRUE. rustls-webpki 0.103 rejects it twice: a CA
// certificate used as an end entity (CaUsedAsEndEntity) and an RSA key under 2048 bits. So
// the launcher serves its own chain: a test CA and a leaf for 127.0.0.1, ::1 and localhost.
//
// Both keys are derived from fixed labels, so every start presents a chain that the CA
// file written by an earlier start still verifies. The keys are public by construction:
// they are for tests on loopback only.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// testCertificates is the serving chain and the CA that clients trust.
type testCertificates struct {
	serving tls.Certificate
	caPEM   []byte
}

// newTestCertificates creates the CA and the leaf certificate. Signatures are randomized,
// so the certificate bytes differ between starts but the keys and names do not.
func newTestCertificates() (*testCertificates, error) {
	notBefore := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)

	caKey := deriveTestKey("vmpulse-vcsim test CA key")
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"vmpulse tests"}, CommonName: "vmpulse-vcsim test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create test CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse test CA certificate: %w", err)
	}

	leafKey := deriveTestKey("vmpulse-vcsim server key")
	leafTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{Organization: []string{"vmpulse tests"}, CommonName: "127.0.0.1"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}

	return &testCertificates{
		serving: tls.Certificate{
			Certificate: [][]byte{leafDER, caDER},
			PrivateKey:  leafKey,
		},
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}, nil
}

// deriveTestKey returns the P-256 key whose scalar is SHA-256(label) reduced to 1..n-1.
func deriveTestKey(label string) *ecdsa.PrivateKey {
	curve := elliptic.P256()
	sum := sha256.Sum256([]byte(label))
	order := new(big.Int).Sub(curve.Params().N, big.NewInt(1))
	scalar := new(big.Int).SetBytes(sum[:])
	scalar.Mod(scalar, order).Add(scalar, big.NewInt(1))

	key := &ecdsa.PrivateKey{D: scalar}
	key.PublicKey.Curve = curve
	key.PublicKey.X, key.PublicKey.Y = curve.ScalarBaseMult(scalar.FillBytes(make([]byte, 32)))
	return key
}

// serverTLSConfig returns the TLS settings of the SOAP endpoint. HTTP/2 is not offered
// because the vSphere SOAP endpoint speaks HTTP/1.1.
func (c *testCertificates) serverTLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.serving},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
}

// writeCAFile writes the CA certificate as PEM to path. It writes a temporary file next
// to path and renames it, so a reader never sees a partial file.
func (c *testCertificates) writeCAFile(path string) error {
	temporary, err := os.CreateTemp(filepath.Dir(path), ".vcsim-ca-*.pem")
	if err != nil {
		return fmt.Errorf("write CA certificate to %s: %w", path, err)
	}
	defer os.Remove(temporary.Name())

	if _, err := temporary.Write(c.caPEM); err != nil {
		temporary.Close()
		return fmt.Errorf("write CA certificate to %s: %w", path, err)
	}
	if err := temporary.Close(); err != nil {
		return fmt.Errorf("write CA certificate to %s: %w", path, err)
	}
	if err := os.Chmod(temporary.Name(), 0o644); err != nil {
		return fmt.Errorf("write CA certificate to %s: %w", path, err)
	}
	if err := os.Rename(temporary.Name(), path); err != nil {
		return fmt.Errorf("write CA certificate to %s: %w", path, err)
	}
	return nil
}
