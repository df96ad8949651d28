package main

import (
	"bytes"
	"debug/elf"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// elfMachines is the ELF machine type of each architecture's binaries.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"386":     elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// elfMachine reads the machine type of an ELF binary.
func elfMachine(bin []byte) (elf.Machine, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return 0, fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	return f.Machine, nil
}

// checkELF refuses a binary built for another platform than p.
func checkELF(bin []byte, p v1.Platform) error {
	if p.OS != "linux" {
		return fmt.Errorf("platform %s: only linux images are built", p)
	}
	want, ok := elfMachines[p.Architecture]
	if !ok {
		return fmt.Errorf("platform %s: unknown architecture", p)
	}
	got, err := elfMachine(bin)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("ELF machine %s, want %s for %s", got, want, p)
	}
	return nil
}
