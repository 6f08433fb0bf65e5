// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

//go:build cgo

package signer

import (
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// modules is the process's PKCS#11 state, kept here and nowhere else. A PKCS#11 module is process-wide by design:
// the dynamic loader maps a library once per process, C_Initialize holds for the whole process, and a login to a
// token holds for all of the process's sessions with it (a logout ends them all). Two registries in one process
// would share modules and logins behind each other's backs, so there is exactly one.
var modules = &registry{mods: make(map[string]*module)}

// registry holds the loaded modules and, per module, one login per token.
type registry struct {
	mu   sync.Mutex // guards mods, every module's tokens and every token's refs
	mods map[string]*module
}

// module is one loaded PKCS#11 library. It stays loaded for the life of the process: unloading a library that may
// have started threads of its own is unsafe for many modules, and reloading one costs a full initialisation.
type module struct {
	path   string
	ctx    *pkcs11.Ctx
	tokens map[string]*token // by token label
}

// token is the process's login to one token of a module, shared by every signer that uses that token.
type token struct {
	mod   *module
	label string
	pin   string // kept to log in again after the HSM drops the session; never in a message
	refs  int    // signers holding the login; guarded by registry.mu

	// lock admits one operation at a time. A session runs one operation at a time, and signatures are rare (one per
	// App every few minutes), so one session per token is enough.
	lock    chan struct{}
	slot    uint
	session pkcs11.SessionHandle
	open    bool // session is live and logged in
}

// acquire returns the process's login to the token, logging in when there is none yet. A PIN that differs from the
// login's is refused: the HSM would not be asked, and the caller would believe a PIN checked that never was. The
// first login happens under r.mu: logins are rare (a configuration write), and two at once on one token would race.
func (r *registry) acquire(c PKCS11Config) (*token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mod, err := r.moduleLocked(c.Library)
	if err != nil {
		return nil, err
	}
	if t, ok := mod.tokens[c.TokenLabel]; ok {
		if subtle.ConstantTimeCompare([]byte(t.pin), []byte(c.PIN)) != 1 {
			return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamPIN,
				Msg: fmt.Sprintf("the PIN differs from the PIN of this process's login to token %q: a PKCS#11 "+
					"login belongs to the whole process, so every use of the token must give the same PIN (to "+
					"change the PIN, change it everywhere and restart the process)", t.label)}
		}
		t.refs++
		return t, nil
	}
	t := &token{mod: mod, label: c.TokenLabel, pin: c.PIN, lock: make(chan struct{}, 1)}
	if err := t.openLocked(true); err != nil {
		return nil, err
	}
	t.refs = 1
	mod.tokens[t.label] = t
	return t, nil
}

// moduleLocked loads and initialises a library once per process. Modules are known by their real path: the loader
// maps a library once however it is named, so two names for one file must share one module and its logins.
func (r *registry) moduleLocked(path string) (*module, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = path
	}
	if m, ok := r.mods[real]; ok {
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary,
			Msg: fmt.Sprintf("library %q could not be loaded as a PKCS#11 module (not a shared library for this "+
				"platform, or it has no C_GetFunctionList)", path)}
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary,
			Msg: fmt.Sprintf("library %q failed to initialise (C_Initialize)", path), Err: err}
	}
	m := &module{path: path, ctx: ctx, tokens: make(map[string]*token)}
	r.mods[real] = m
	return m, nil
}

// release gives back a share of the login; the last one logs out and closes the session.
func (r *registry) release(t *token) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.refs--; t.refs > 0 {
		return
	}
	delete(t.mod.tokens, t.label)
	t.lock <- struct{}{} // wait for an operation in flight
	defer func() { <-t.lock }()
	if t.open {
		_ = t.mod.ctx.Logout(t.session)
		_ = t.mod.ctx.CloseSession(t.session)
		t.open = false
	}
}

// openLocked finds the token's slot, opens a session and logs in. first tells a first login, where a missing token
// is a wrong label, from a re-opening, where it is an HSM that has not come back yet. The caller holds t.lock or is
// the only one who knows t.
func (t *token) openLocked(first bool) error {
	p := t.mod.ctx
	slot, err := t.findSlot(first)
	if isCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		// Someone finalised the module: initialise it again (another token may have done so already).
		if err := p.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return t.fail("initialising the library again", err)
		}
		slot, err = t.findSlot(first)
	}
	if err != nil {
		return err
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return t.fail("opening a session", err)
	}
	if err := p.Login(sh, pkcs11.CKU_USER, t.pin); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = p.CloseSession(sh)
		return t.fail("logging in", err)
	}
	t.slot, t.session, t.open = slot, sh, true
	return nil
}

// findSlot returns the slot holding the token.
func (t *token) findSlot(first bool) (uint, error) {
	p := t.mod.ctx
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, t.fail("listing slots", err)
	}
	var labels []string
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil {
			continue // a token being removed or not ready: not ours to judge
		}
		if info.Label == t.label {
			return s, nil
		}
		if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			labels = append(labels, fmt.Sprintf("%q", info.Label))
		}
	}
	present := "none"
	if len(labels) > 0 {
		slices.Sort(labels)
		present = strings.Join(labels, ", ")
	}
	e := &Error{Signer: KindPKCS11, Kind: KindUnavailable, Param: ParamTokenLabel,
		Msg: fmt.Sprintf("no token labelled %q in library %q (tokens present: %s)", t.label, t.mod.path, present)}
	if first {
		e.Kind = KindMisconfigured
	}
	return 0, e
}

// do runs op on the token's session. When the session turns out to be lost (the HSM restarted, the module was
// finalised, all sessions were closed), it opens a new session, logs in again and runs op once more, so that
// signing goes on once the HSM is back.
func (t *token) do(ctx context.Context, op func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	select {
	case t.lock <- struct{}{}:
	case <-ctx.Done():
		return &Error{Signer: KindPKCS11, Kind: KindUnavailable,
			Msg: fmt.Sprintf("waiting for token %q", t.label), Err: ctx.Err()}
	}
	defer func() { <-t.lock }()
	if !t.open {
		if err := t.openLocked(false); err != nil {
			return err
		}
	}
	err := op(t.mod.ctx, t.session)
	if !sessionLost(err) {
		return err
	}
	_ = t.mod.ctx.CloseSession(t.session)
	t.open = false
	if rerr := t.openLocked(false); rerr != nil {
		return rerr
	}
	return op(t.mod.ctx, t.session)
}

// fail describes a PKCS#11 failure on the token. A refused PIN names the PIN; anything else is the HSM failing.
func (t *token) fail(doing string, err error) *Error {
	e := &Error{Signer: KindPKCS11, Kind: KindUnavailable, Err: err,
		Msg: fmt.Sprintf("%s on token %q (library %s)", doing, t.label, t.mod.path)}
	switch {
	case isCode(err, pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE):
		e.Kind, e.Param = KindMisconfigured, ParamPIN
		e.Msg = fmt.Sprintf("token %q refused the PIN: give the token's user PIN", t.label)
	case isCode(err, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_USER_PIN_NOT_INITIALIZED):
		e.Kind, e.Param = KindMisconfigured, ParamPIN
		e.Msg = fmt.Sprintf("token %q's user PIN is locked, expired or not set: reset it on the HSM", t.label)
	}
	return e
}

// sessionLost reports the failures after which a new session (and login) may succeed.
func sessionLost(err error) bool {
	return isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID)
}

// isCode reports whether err is one of the PKCS#11 return values.
func isCode(err error, codes ...uint) bool {
	var p pkcs11.Error
	if !errors.As(err, &p) {
		return false
	}
	for _, c := range codes {
		if uint(p) == c {
			return true
		}
	}
	return false
}

// pkcs11Signer signs with a private key on a token; the key never leaves the HSM.
type pkcs11Signer struct {
	tok   *token
	label string
	id    []byte
	sel   string // the selection, such as `label "app" and ID 01`
	name  string // how messages name the key
	pub   *rsa.PublicKey
	desc  Description

	closed    atomic.Bool
	closeOnce sync.Once
}

func openPKCS11(ctx context.Context, c PKCS11Config, id []byte) (Signer, error) {
	tok, err := modules.acquire(c)
	if err != nil {
		return nil, err
	}
	s := &pkcs11Signer{tok: tok, label: c.KeyLabel, id: id}
	var parts []string
	if c.KeyLabel != "" {
		parts = append(parts, fmt.Sprintf("label %q", c.KeyLabel))
	}
	if len(id) > 0 {
		parts = append(parts, "ID "+hex.EncodeToString(id))
	}
	s.sel = strings.Join(parts, " and ")
	s.name = fmt.Sprintf("the private key with %s on token %q", s.sel, c.TokenLabel)
	if err := tok.do(ctx, s.load); err != nil {
		modules.release(tok)
		if e, ok := AsError(err); ok {
			return nil, e
		}
		return nil, tok.fail("reading the private key with "+s.sel, err)
	}
	fp, err := Fingerprint(s.pub)
	if err != nil {
		modules.release(tok)
		return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamKeyLabel,
			Msg: "unusable public key", Err: err}
	}
	s.desc = Description{Kind: KindPKCS11, Key: fmt.Sprintf("token %q, key %s", c.TokenLabel,
		strings.Join(parts, ", ")), Fingerprint: fp}
	return s, nil
}

// keyParam is the setting that selects the key, for errors.
func (s *pkcs11Signer) keyParam() Param {
	if s.label != "" {
		return ParamKeyLabel
	}
	return ParamKeyID
}

// template selects the key's objects of a class.
func (s *pkcs11Signer) template(class uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if s.label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, s.label))
	}
	if len(s.id) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, s.id))
	}
	return t
}

// find returns the handles of at most max objects matching the template.
func find(p *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	found, _, err := p.FindObjects(sh, max)
	if ferr := p.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	return found, err
}

// privateKey finds the one private key the settings select.
func (s *pkcs11Signer) privateKey(p *pkcs11.Ctx, sh pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	found, err := find(p, sh, s.template(pkcs11.CKO_PRIVATE_KEY), 2)
	if err != nil {
		return 0, err
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return 0, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
			Msg: fmt.Sprintf("no private key with %s on token %q (private keys present: %s)", s.sel,
				s.tok.label, s.present(p, sh))}
	default:
		return 0, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
			Msg: fmt.Sprintf("more than one private key matches: %s is ambiguous; give both the key's label and "+
				"its ID", s.name)}
	}
}

// present lists the labels and IDs of the token's private keys, for an error message.
func (s *pkcs11Signer) present(p *pkcs11.Ctx, sh pkcs11.SessionHandle) string {
	found, err := find(p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}, 20)
	if err != nil || len(found) == 0 {
		return "none"
	}
	var out []string
	for _, h := range found {
		attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil || len(attrs) != 2 {
			continue
		}
		out = append(out, fmt.Sprintf("label %q ID %s", attrs[0].Value, hex.EncodeToString(attrs[1].Value)))
	}
	return strings.Join(out, "; ")
}

// load finds the key, checks that it is an RSA key that may sign, and reads its public half.
func (s *pkcs11Signer) load(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
	h, err := s.privateKey(p, sh)
	if err != nil {
		return err
	}
	attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil)})
	if err != nil {
		return err
	}
	if kt := ulong(attrs[0].Value); kt != pkcs11.CKK_RSA {
		return &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
			Msg: fmt.Sprintf("%s is not an RSA key (it is %s): GitHub App keys are RSA", s.name, keyTypeLabel(kt))}
	}
	if len(attrs[1].Value) != 1 || attrs[1].Value[0] == 0 {
		return &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
			Msg: fmt.Sprintf("%s may not sign (CKA_SIGN is false): import it as a signing key", s.name)}
	}
	pub, err := s.publicKey(p, sh, h)
	if err != nil {
		return err
	}
	s.pub, err = checkRSAPublic(KindPKCS11, s.keyParam(), s.name, pub)
	return err
}

// publicKey reads the modulus and exponent from the private key object, which most HSMs expose, else from the public
// key object with the same label and ID.
func (s *pkcs11Signer) publicKey(p *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (*rsa.PublicKey,
	error) {
	want := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)}
	attrs, err := p.GetAttributeValue(sh, h, want)
	if err != nil || len(attrs) != 2 || len(attrs[0].Value) == 0 {
		found, ferr := find(p, sh, s.template(pkcs11.CKO_PUBLIC_KEY), 1)
		if ferr != nil {
			return nil, ferr
		}
		if len(found) == 0 {
			return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
				Msg: fmt.Sprintf("%s shows no modulus, and the token has no public key with the same label and "+
					"ID: import the key pair with its public key", s.name)}
		}
		if attrs, err = p.GetAttributeValue(sh, found[0], want); err != nil {
			return nil, err
		}
	}
	n := new(big.Int).SetBytes(attrs[0].Value)
	e := new(big.Int).SetBytes(attrs[1].Value)
	if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: s.keyParam(),
			Msg: fmt.Sprintf("%s has an unusable modulus or public exponent", s.name)}
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// ulong decodes a CK_ULONG attribute, which is in the platform's byte order and size.
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	default:
		return ^uint(0)
	}
}

// ckkECEdwards is CKK_EC_EDWARDS (PKCS#11 3.0), which the pkcs11 package does not name.
const ckkECEdwards = 0x40

func keyTypeLabel(kt uint) string {
	switch kt {
	case pkcs11.CKK_EC:
		return "an EC key"
	case pkcs11.CKK_DSA:
		return "a DSA key"
	case ckkECEdwards:
		return "an EdDSA key"
	default:
		return fmt.Sprintf("of key type 0x%x", kt)
	}
}

// sha256DigestInfo is the DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2): CKM_RSA_PKCS signs what it
// is given, so the prefix makes it an RSASSA-PKCS1-v1_5 signature over the digest.
var sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	0x01, 0x05, 0x00, 0x04, 0x20}

// Public implements Signer.
func (s *pkcs11Signer) Public() *rsa.PublicKey { return s.pub }

// Describe implements Signer.
func (s *pkcs11Signer) Describe() Description { return s.desc }

// SignRS256 implements Signer with CKM_RSA_PKCS over the digest's DigestInfo.
func (s *pkcs11Signer) SignRS256(ctx context.Context, digest []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed(KindPKCS11)
	}
	if err := checkDigest(KindPKCS11, digest); err != nil {
		return nil, err
	}
	msg := append(append(make([]byte, 0, len(sha256DigestInfo)+len(digest)), sha256DigestInfo...), digest...)
	var sig []byte
	err := s.tok.do(ctx, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		h, err := s.privateKey(p, sh)
		if err != nil {
			return err
		}
		if err := p.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, h); err != nil {
			return err
		}
		sig, err = p.Sign(sh, msg)
		return err
	})
	if err != nil {
		if e, ok := AsError(err); ok {
			return nil, e
		}
		e := s.tok.fail("signing with the private key with "+s.sel, err)
		if isCode(err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_TYPE_INCONSISTENT,
			pkcs11.CKR_MECHANISM_INVALID) {
			e.Kind, e.Param = KindMisconfigured, s.keyParam()
		}
		return nil, e
	}
	if err := checkSignature(KindPKCS11, s.pub, digest, sig); err != nil {
		return nil, err
	}
	return sig, nil
}

// Close implements Signer: it gives back its share of the token's login.
func (s *pkcs11Signer) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		modules.release(s.tok)
	})
	return nil
}
