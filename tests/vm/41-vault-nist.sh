#!/bin/sh
# NIST SP 800-38A F.1 (ECB) and F.2 (CBC), AES-128/192/256, encrypt and decrypt, through
# kcapi-enc (AF_ALG) by the vault's driver names.
plain=6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710
iv=000102030405060708090a0b0c0d0e0f
k128=2b7e151628aed2a6abf7158809cf4f3c
k192=8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b
k256=603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
status=0
# check NAME DRIVER KEY CIPHERTEXT [IV]
check() {
    echo "$3" | xxd -r -p > /tmp/key
    ivarg=""; [ -n "$5" ] && ivarg="--iv $5"
    enc=$(echo "$plain" | xxd -r -p | kcapi-enc -e -c "$2" $ivarg --keyfd 3 3</tmp/key | xxd -p | tr -d '\n')
    dec=$(echo "$4" | xxd -r -p | kcapi-enc -d -c "$2" $ivarg --keyfd 3 3</tmp/key | xxd -p | tr -d '\n')
    if [ "$enc" = "$4" ] && [ "$dec" = "$plain" ]; then
        echo "$1 via $2: encrypt ok, decrypt ok"
    else
        echo "$1 via $2: FAILED (encrypt gave $enc, decrypt gave $dec)"
        status=1
    fi
}
check "F.1.1/F.1.2 ECB-AES128" ecb-aes-sevault $k128 3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4
check "F.1.3/F.1.4 ECB-AES192" ecb-aes-sevault $k192 bd334f1d6e45f25ff712a214571fa5cc974104846d0ad3ad7734ecb3ecee4eefef7afd2270e2e60adce0ba2face6444e9a4b41ba738d6c72fb16691603c18e0e
check "F.1.5/F.1.6 ECB-AES256" ecb-aes-sevault $k256 f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7
check "F.2.1/F.2.2 CBC-AES128" cbc-aes-sevault $k128 7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7 $iv
check "F.2.3/F.2.4 CBC-AES192" cbc-aes-sevault $k192 4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd $iv
check "F.2.5/F.2.6 CBC-AES256" cbc-aes-sevault $k256 f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b $iv
exit $status
