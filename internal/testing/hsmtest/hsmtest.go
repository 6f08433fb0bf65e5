// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package hsmtest sets up SoftHSM2 (Debian's softhsm2) for tests: a token directory of the test's own, tokens made
// and keys imported by softhsm2-util as an operator would. A PKCS#11 module is process-wide and SoftHSM reads its
// configuration (SOFTHSM2_CONF) once, when the module is initialised: a test process sets SoftHSM up once and shares
// it. It is test infrastructure, never imported by the plugin.
package hsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SOPIN is the security officer's PIN of every token made here.
const SOPIN = "so-pin-0000"

// Libraries are where distributions install the SoftHSM2 module.
var Libraries = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// Token is a token to make.
type Token struct {
	Label, PIN string
}

// Key is a private key to import into a token: PKCS#8 PEM ("PRIVATE KEY"), as `openssl pkcs8 -topk8 -nocrypt`
// writes it.
type Key struct {
	Token, PIN string
	Label, ID  string // ID in hexadecimal
	PEM        []byte
}

// Library returns the installed SoftHSM2 module, or why there is none.
func Library() (string, error) {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return "", err
	}
	for _, l := range Libraries {
		if _, err := os.Stat(l); err == nil {
			return l, nil
		}
	}
	return "", fmt.Errorf("no libsofthsm2.so in %s", strings.Join(Libraries, ", "))
}

// Setup writes a SoftHSM configuration into dir with a token directory there, sets SOFTHSM2_CONF to it in the
// process's environment (where the module will read it), makes the tokens and imports the keys. It returns the
// module's path and the configuration's.
func Setup(dir string, tokens []Token, keys []Key) (lib, conf string, err error) {
	if lib, err = Library(); err != nil {
		return "", "", err
	}
	conf = filepath.Join(dir, "softhsm2.conf")
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokenDir, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokenDir+"\nobjectstore.backend = file\n"+
		"log.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return "", "", err
	}
	for _, t := range tokens {
		if err := Util(conf, "--init-token", "--free", "--label", t.Label, "--so-pin", SOPIN, "--pin",
			t.PIN); err != nil {
			return "", "", err
		}
	}
	for _, k := range keys {
		if err := Import(conf, k); err != nil {
			return "", "", err
		}
	}
	return lib, conf, nil
}

// Import imports a private key into a token with softhsm2-util, as an operator would.
func Import(conf string, k Key) error {
	f, err := os.CreateTemp(filepath.Dir(conf), "key-*.pk8")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(k.PEM)
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return Util(conf, "--import", f.Name(), "--token", k.Token, "--label", k.Label, "--id", k.ID, "--pin", k.PIN)
}

// Util runs softhsm2-util with the configuration conf.
func Util(conf string, args ...string) error {
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util %s: %w: %s", args[0], err, out)
	}
	return nil
}
