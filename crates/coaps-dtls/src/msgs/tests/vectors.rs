//! Handshake message bodies (without the 12-byte DTLS handshake header) produced by
//! OpenSSL 3.0.22 `s_client` / `s_server -dtls1_2`, captured with a UDP socket or `-msg`.

/// ClientHello from `openssl s_client -dtls1_2 -psk 0102 -cipher PSK-CHACHA20-POLY1305` (OpenSSL 3.0), captured from a UDP socket.
pub(super) const CH_PSK: &str = concat!(
    "fefd129b85f231bc25ed669026d54d0b5c13eab8f43c14748eca7d9c97e706048d9900000004ccab00ff0100003a0023",
    "00000016000000170000000d002a0028040305030603080708080809080a080b08040805080604010501060103030301",
    "0302040205020602",
);

/// ClientHello from `openssl s_client -dtls1_2 -servername coap.example -cipher ECDHE-ECDSA-CHACHA20-POLY1305`, captured from a UDP socket.
pub(super) const CH_ECDSA: &str = concat!(
    "fefd0d2653686dcb5605e3ab8aadd6b0ecbac6679b62c050bc8646bf1fc99dec0c1c00000004cca900ff010000670000",
    "0011000f00000c636f61702e6578616d706c65000b000403000102000a000c000a001d0017001e001900180023000000",
    "16000000170000000d002a0028040305030603080708080809080a080b08040805080604010501060103030301030204",
    "0205020602",
);

/// HelloVerifyRequest from `openssl s_server -dtls1_2 -psk 0102 -nocert` (PSK flow, `-msg`).
pub(super) const PSK_HVR: &str = "feff14dd6723daf546d8adfa0c7a3df17ba4a265c9bbaf";

/// Second ClientHello, carrying the cookie of PSK_HVR.
pub(super) const PSK_CH2: &str = concat!(
    "fefd38e4a3ebadc852ef8f0ee6adf328119abf19e9910e7ab3623e76d5684d001a710014dd6723daf546d8adfa0c7a3d",
    "f17ba4a265c9bbaf0004ccab00ff0100003a002300000016000000170000000d002a0028040305030603080708080809",
    "080a080b080408050806040105010601030303010302040205020602",
);

/// ServerHello of the PSK flow.
pub(super) const PSK_SH: &str = concat!(
    "fefd1bcac6d02ef2a1b1d57acf4345fb55bc89067ff38659b66bcba014986d3cb7fc00ccab00000dff01000100002300",
    "0000170000",
);

/// ClientKeyExchange of the PSK flow (identity `Client_identity`).
pub(super) const PSK_CKE: &str = "000f436c69656e745f6964656e74697479";

/// NewSessionTicket of the PSK flow.
pub(super) const PSK_NST: &str = concat!(
    "00001c2000c0811cca5b0e9db5852af2cfad44f1bbaca182559e6ab11c727b8ca4d164ed2031e8ad7158ae851e24bbfd",
    "b5361ea5c662c2df663775c5af68f8796d86614edaeb0cb38e74c801ff9aefb020da5e395b31b73f3c3756d47c384712",
    "abec683ab3c4fd41342c8c5109f6187390bfc9b19dfe50f92b54305380a7669d2cc0da758cc485486e53649b2f356fab",
    "c18656e9c9b36ac87e3d2a856960a0d8391896900b218ec0351839d9838979eab5618e6c86b87a8526e668ee5f93646d",
    "57a0e8734ab5",
);

/// Second ClientHello of an ECDHE-ECDSA flow with `-groups P-256 -servername coap.example`, with cookie.
pub(super) const ECDSA_CH2: &str = concat!(
    "fefd938472cd626977de5f9ab5b63356c6f3c830d6ec095103328ce2bba4e0c4ddfc0014ff783fa9ccd86b636da5c972",
    "62bfa569d17f754b0004cca900ff0100005f00000011000f00000c636f61702e6578616d706c65000b00040300010200",
    "0a000400020017002300000016000000170000000d002a0028040305030603080708080809080a080b08040805080604",
    "0105010601030303010302040205020602",
);

/// ServerHello of the ECDHE-ECDSA flow.
pub(super) const ECDSA_SH: &str = concat!(
    "fefd1517a130e7172b129fdc90d3742dc18876d4c0911e821f9853a720e08a9f168500cca9000015ff01000100000b00",
    "04030001020023000000170000",
);

/// Server Certificate (X.509, one self-signed P-256 certificate) of the ECDHE-ECDSA flow.
pub(super) const ECDSA_SERVER_CERT: &str = concat!(
    "00018a0001873082018330820129a00302010202146da8a5ec8cba53114b8cfb42f25cb9fec47159d3300a06082a8648",
    "ce3d04030230173115301306035504030c0c636f61702e6578616d706c65301e170d3236313132373138353930325a17",
    "0d3336313132343138353930325a30173115301306035504030c0c636f61702e6578616d706c653059301306072a8648",
    "ce3d020106082a8648ce3d030107034200048d15cb201e1696667fd51c716d759812b21aa2722925e54a18919bb87578",
    "ba2fb8067d7813fb3414876eacca916426d41585bcabdc377d8ef7e6a2b3f16f4c30a3533051301d0603551d0e041604",
    "146d98c10af6d23521bdaaf39952361226fefc20b3301f0603551d230418301680146d98c10af6d23521bdaaf3995236",
    "1226fefc20b3300f0603551d130101ff040530030101ff300a06082a8648ce3d0403020348003045022100d0ba890da0",
    "d4f4216e4379074500a825634d1782d01788ae03be04f178d667e802200bad181b77dc2a8eb79554d396c85d317ddba5",
    "4beef6aeafe97bbe5777af1ad0",
);

/// ServerKeyExchange (ECDHE_ECDSA, secp256r1) of the ECDHE-ECDSA flow.
pub(super) const ECDSA_SKE: &str = concat!(
    "0300174104cf5cc02e19df4da8ab82fa5114ebf4369f51cf245940def60de268db06417116bc3d9504724d3e1d79d0a5",
    "6f99b638a50771520eb4cf227f4d0bca40349f4c97040300483046022100d8d90916d6900efa4148f8931a87ee8b7adf",
    "2e1606e7527b88b1bbddc5207d58022100dcf1372dd39abb46eee98793d8ef88e037ca0defe308056e18762d58a59a36",
    "19",
);

/// CertificateRequest from `openssl s_server -Verify 1`.
pub(super) const ECDSA_CERT_REQ: &str =
    "030102400028040305030603080708080809080a080b0804080508060401050106010303030103020402050206020000";

/// ClientKeyExchange (ecdh_Yc) of the ECDHE-ECDSA flow.
pub(super) const ECDSA_CKE: &str = concat!(
    "410498f094b5273f97816295db0b2213b6daa16fd829cdbdd26c714d88066b190361e4e789589d9a996804bab503d395",
    "2c1993b4f925609371a956f2a99047a3465a",
);

/// CertificateVerify (a digitally-signed struct) of the ECDHE-ECDSA flow.
pub(super) const ECDSA_CV: &str = concat!(
    "040300483046022100c380c485fa50b148027fa58341048a5828c29ed7cb2b01735c1d0771885d84170221008dcd20ce",
    "b8048d451bd9ab9c0ac702507795c5c648155e34490c058dbc1cf1b8",
);

/// ServerHello of an ECDHE-PSK flow (`-psk_hint hint -cipher ECDHE-PSK-CHACHA20-POLY1305`).
pub(super) const ECDHE_PSK_SH: &str = concat!(
    "fefd13c3e69419fab11981d844ec39b08aa27f3e01de919a1cacf9b42439e9eceb6700ccac00000dff01000100002300",
    "0000170000",
);

/// ServerKeyExchange (ECDHE_PSK, hint `hint`, x25519) of the ECDHE-PSK flow.
pub(super) const ECDHE_PSK_SKE: &str =
    "000468696e7403001d209b3d1150ae6ee10083b58a9bfbdf02e36b52944d0b370918b19a4bf231e1e42a";

/// ClientKeyExchange (ECDHE_PSK) of the ECDHE-PSK flow.
pub(super) const ECDHE_PSK_CKE: &str = concat!(
    "000f436c69656e745f6964656e74697479209b307dcb7dbd435a2306db99b4eaa2f75c1812ff268fe1f0223d039cbd0b",
    "f06f",
);
