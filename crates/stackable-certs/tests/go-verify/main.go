// Command goverify verifies certificates with Go's crypto/x509, the verifier the Kubernetes
// API server uses when it calls webhooks. It reads cases from stdin, one per line:
//
//	<ca-bundle.pem> <leaf.pem> <dns-name-or-ip> <server|client> <ok|fail>
//
// and prints one result line per case. It exits 1 if any case did not have the expected
// outcome. Standard library only.
package main

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

func loadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return certs, nil
}

func verify(caPath, leafPath, name, usage string) error {
	cas, err := loadCerts(caPath)
	if err != nil {
		return err
	}
	leaves, err := loadCerts(leafPath)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	intermediates := x509.NewCertPool()
	for _, c := range leaves[1:] {
		intermediates.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: intermediates}
	if usage == "client" {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		opts.DNSName = name
	}
	_, err = leaves[0].Verify(opts)
	return err
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	failed := 0
	total := 0
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 5 {
			fmt.Printf("BAD-INPUT %q\n", scanner.Text())
			failed++
			continue
		}
		total++
		err := verify(fields[0], fields[1], fields[2], fields[3])
		want := fields[4] == "ok"
		if (err == nil) == want {
			fmt.Printf("AS-EXPECTED %s %s %s: err=%v\n", fields[1], fields[2], fields[4], err)
		} else {
			fmt.Printf("UNEXPECTED %s %s want %s: err=%v\n", fields[1], fields[2], fields[4], err)
			failed++
		}
	}
	fmt.Printf("cases=%d unexpected=%d\n", total, failed)
	if failed > 0 || total == 0 {
		os.Exit(1)
	}
}
